"""Parsers: one per upstream layout, all producing ParsedPost / ParsedPaper records."""
