"""XML mediation: parse to data, XPath, XSLT and XSD validation, safe by default.

`security` holds the one hardened parser factory every step uses; `convention` documents
the lossless XML <-> data convention of `xml.parse`; `steps` holds the four steps
registered as `xml.parse`, `xml.xpath`, `xml.xslt` and `xml.validate`.
"""
