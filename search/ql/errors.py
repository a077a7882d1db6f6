class QueryError(Exception):
    """A query that cannot run, with the 1-based line and column it went wrong at. `extra` holds them, the caret,
    and whatever else helps (suggestions, the limit passed); the search boundary (search.queries) turns it into the
    platform's 400 with that `extra`."""

    def __init__(self, message: str, *, query: str, line: int, column: int):
        super().__init__(message)
        self.message = message
        self.query = query
        self.line = line
        self.column = column
        self.extra = {"line": line, "column": column, "caret": self.caret()}

    def caret(self) -> str:
        """The offending line of the query with a caret under the column."""
        lines = self.query.splitlines() or [""]
        text = lines[self.line - 1] if self.line <= len(lines) else ""
        return f"{text}\n{' ' * (self.column - 1)}^"

    def render(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}\n{self.caret()}"

    def __str__(self) -> str:
        return self.render()
