"""One walk over the query tree for every engine, checker and printer: `visit(node, ...)` calls the subclass's
`visit_<NodeClass>(node, ...)`, so a walker names each node it handles and an unhandled one fails loudly."""

from typing import Generic, ParamSpec, TypeVar

from search.ql import ast

Context = ParamSpec("Context")
Result = TypeVar("Result")


class UnhandledNode(TypeError):
    """A walker met a node it has no `visit_<NodeClass>` for: a bug of the walker, never of the query."""


class Visitor(Generic[Context, Result]):
    """A walker with context arguments `Context` (a scope, a table alias, a datarow) that turns each node into a
    `Result`: `class Compiler(Visitor[[str], str])` has `visit_And(self, node: ast.And, scope: str) -> str`, ..."""

    def visit(self, node: ast.Expr, *args: Context.args, **kwargs: Context.kwargs) -> Result:
        kind = type(node).__name__
        method = getattr(self, f"visit_{kind}", None)
        if method is None:
            raise UnhandledNode(f"{type(self).__name__} cannot walk a {kind} node: it has no visit_{kind}")
        result: Result = method(node, *args, **kwargs)
        return result
