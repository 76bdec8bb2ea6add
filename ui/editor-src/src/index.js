// The parts of CodeMirror 6 the Flowyard UI uses, bundled into one ES module
// (ui/flowyard_ui/static/vendor/codemirror.min.js) by build.mjs. Flowyard's own editor
// code is ui/flowyard_ui/static/editor.js, which imports this bundle; it is not built.
// Export what editor.js uses (and no more: each export is bundled).
export { EditorState, RangeSetBuilder } from "@codemirror/state";
export {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
  highlightSpecialChars, Decoration, ViewPlugin, hoverTooltip, placeholder,
} from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching, foldGutter, foldKeymap,
} from "@codemirror/language";
export { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
export { lintGutter, lintKeymap, setDiagnostics } from "@codemirror/lint";
export { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
export { yaml } from "@codemirror/lang-yaml";
