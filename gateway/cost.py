"""The query cost limit: how many items an operation's lists may hold, estimated from its page sizes before it runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_list_type,
    value_from_ast_untyped,
)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension

from gateway.errors import error
from services.contracts.errors import ErrorCode

# `first` when a list or connection is asked for without one: gateway.types.common.page_size's default.
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Cost:
    """An operation's estimated cost, and the list that adds the most to it (the one to ask less of)."""

    total: int
    costliest: str | None = None
    costliest_items: int = 0


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    default_page_size: int = DEFAULT_PAGE_SIZE,
) -> Cost:
    """The sum, over the operation's lists of objects, of the items each may hold: its page size times the page
    sizes of the lists around it.

    A field with a `first` argument holds `first` items (a variable's value, else the operation's default for
    it, else the argument's default, else `default_page_size`; below 1 counts as 1, the field refuses it anyway);
    the list inside a connection (`edges`) holds the connection's `first`; a list by `ids` as many as it is
    given; any other list of objects `default_page_size`. Fragments and inline fragments count where they are
    spread; introspection costs nothing. With several operations and no name, the costliest one (execution will
    refuse the document anyway)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    costs = [
        _Walk(schema, fragments, _values(operation, variables), default_page_size).operation(operation)
        for operation in operations
    ]
    return max(costs, key=lambda cost: cost.total, default=Cost(0))


def _values(operation: OperationDefinitionNode, variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """The variables as the operation will see them: those sent, else the operation's defaults."""
    values = dict(variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    default_page_size: int
    total: int = 0
    costliest: tuple[int, str | None] = field(default=(0, None))

    def operation(self, operation: OperationDefinitionNode) -> Cost:
        root = self.schema.get_root_type(operation.operation)
        if root is not None:
            self.selections(root, operation.selection_set, items=1, page=None, path=(), spreading=frozenset())
        return Cost(self.total, self.costliest[1], self.costliest[0])

    def selections(
        self,
        parent: Any,
        selection_set: SelectionSetNode,
        *,
        items: int,
        page: int | None,
        path: tuple[str, ...],
        spreading: frozenset[str],
    ) -> None:
        """`items`: how many times this selection is resolved; `page`: the page size of the connection it is in."""
        for selection, on_type, spread in self.fields(parent, selection_set, spreading):
            self.field(on_type, selection, items=items, page=page, path=path, spreading=spread)

    def fields(
        self, parent: Any, selection_set: SelectionSetNode, spreading: frozenset[str]
    ) -> Iterator[tuple[FieldNode, Any, frozenset[str]]]:
        """The fields selected, fragments flattened, each with the type it is selected on."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, parent, spreading
            elif isinstance(selection, InlineFragmentNode):
                on_type = (
                    self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                )
                if on_type is not None:
                    yield from self.fields(on_type, selection.selection_set, spreading)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spreading:
                    continue  # unknown or cyclic: validation refuses the document
                on_type = self.schema.get_type(fragment.type_condition.name.value)
                if on_type is not None:
                    yield from self.fields(on_type, fragment.selection_set, spreading | {name})

    def field(
        self,
        parent: Any,
        node: FieldNode,
        *,
        items: int,
        page: int | None,
        path: tuple[str, ...],
        spreading: frozenset[str],
    ) -> None:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return
        definition = parent.fields.get(name)
        if definition is None:
            return  # validation refuses the document
        here = (*path, node.alias.value if node.alias else name)
        named = get_named_type(definition.type)
        inner_page = None
        if is_list_type(get_nullable_type(definition.type)) and is_composite_type(named):
            if "first" in definition.args:
                size = self.first(node, definition)
            elif "ids" in definition.args:
                size = self.ids(node)
            else:
                size = page if page is not None else self.default_page_size
            items *= size
            self.total += items
            if items > self.costliest[0]:
                self.costliest = (items, ".".join(here))
        elif "first" in definition.args:
            inner_page = self.first(node, definition)  # a connection: the list inside it is its page
        if node.selection_set is not None and is_composite_type(named):
            self.selections(named, node.selection_set, items=items, page=inner_page, path=here, spreading=spreading)

    def argument(self, node: FieldNode, name: str) -> Any:
        """An argument's value as given (literal or variable), Undefined when not given."""
        argument = next((a for a in node.arguments or () if a.name.value == name), None)
        if argument is None:
            return Undefined
        if isinstance(argument.value, VariableNode):
            return self.variables.get(argument.value.name.value, Undefined)
        return value_from_ast_untyped(argument.value, self.variables)

    def ids(self, node: FieldNode) -> int:
        value = self.argument(node, "ids")
        return max(len(value), 1) if isinstance(value, list) else self.default_page_size

    def first(self, node: FieldNode, definition: GraphQLField) -> int:
        value = self.argument(node, "first")
        if value is Undefined:
            value = definition.args["first"].default_value
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # as GraphQL's Int takes it
        if isinstance(value, bool) or not isinstance(value, int):
            return self.default_page_size  # null or absent (the field's default), or refused when executed
        return max(value, 1)


class QueryCostLimiter(SchemaExtension):
    """Refuses, before it runs, an operation whose estimated cost (`operation_cost`) is above `max_cost`.

    Not a validation rule: the cost depends on the variables, and validation is cached per document."""

    def __init__(self, *, max_cost: int, default_page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.max_cost = max_cost
        self.default_page_size = default_page_size

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            cost = operation_cost(
                context.schema._schema,
                context.graphql_document,
                context.variables,
                context.operation_name,
                default_page_size=self.default_page_size,
            )
            if cost.total > self.max_cost:
                # Raised here, execution never starts: strawberry answers the error alone, for queries,
                # mutations and subscriptions alike.
                raise error(
                    f"this query may fetch {cost.total} items, more than the limit of {self.max_cost}: ask for smaller "
                    f"pages (`first`), above all at {cost.costliest} ({cost.costliest_items} items)",
                    ErrorCode.BAD_USER_INPUT,
                    field=cost.costliest,
                    rule="cost",
                    limit=self.max_cost,
                    cost=cost.total,
                )
        yield
