// The parts of CodeMirror 6 the Flowyard UI uses, bundled into one ES module
// (ui/flowyard_ui/static/vendor/codemirror.min.js) by build.mjs. Flowyard's own editor
// code is ui/flowyard_ui/static/editor.js, which imports this bundle; it is not built.
export { EditorState, StateEffect, StateField, RangeSetBuilder, Compartment } from "@codemirror/state";
export {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
  highlightSpecialChars, Decoration, ViewPlugin, MatchDecorator, hoverTooltip, placeholder,
} from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  syntaxTree, syntaxHighlighting, defaultHighlightStyle, HighlightStyle, indentOnInput, bracketMatching,
  foldGutter, foldKeymap, StreamLanguage,
} from "@codemirror/language";
export { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap, startCompletion } from "@codemirror/autocomplete";
export { linter, lintGutter, lintKeymap, setDiagnostics, forceLinting, diagnosticCount } from "@codemirror/lint";
export { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
export { yaml, yamlLanguage } from "@codemirror/lang-yaml";
export { tags } from "@lezer/highlight";
