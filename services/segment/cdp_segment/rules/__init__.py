"""The audience rule language: AST, text syntax (parse/print), and its two evaluators.

- ``ast``       the rule as frozen dataclasses (pure Python; ``codec`` maps it to/from protos)
- ``syntax``    ``parse(text) -> Node`` and ``render(node) -> text``; they round-trip
- ``memory``    evaluates one person held in memory (the live path)
- ``sql``       compiles a rule to one SQL query over the projection (estimate, list, refresh)
- ``timing``    the next moment a person's membership can change without new data

The two evaluators share one set of semantics, written down in docs/segment.md and checked
against each other by a property-based test.
"""
