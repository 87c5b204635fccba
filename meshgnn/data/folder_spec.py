"""What a mesh folder holds: which files to read and which of their fields mean what.

A `FolderSpec` is checked when it is built (every inconsistency of the selection is one
UserError line, before any file is opened); `source_spec` turns it, with the field component
counts the folder check inferred, into the `SourceSpec` the graph and feature code use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from meshgnn.data.sample import FieldSpec, SourceSpec
from meshgnn.errors import UserError

# Where each kind of name is configured, for the fixes in messages.
OPTION = {"input": "data.inputs / --inputs", "target": "data.targets / --targets",
          "node-type": "data.node_type_field / --node-type-field", "global": "data.globals / --globals"}


@dataclass(frozen=True)
class FolderSpec:
    """Which files of a folder to read and which of their fields mean what.

    path:             the folder.
    pattern:          glob relative to `path` ("*", "**/*.vtu", ...).
    inputs, targets:  point_data field names, in feature/target column order.
    node_type_field:  an integer point_data field of node kinds, or None (all nodes alike).
    node_type_values: the field's values in one-hot order; the first is the interior kind.
                      Non-empty exactly when `node_type_field` is set.
    globals:          sample-level parameters, from field_data or the sidecar `<stem>.json`.
    targets_required: False when reading meshes to predict on: a target field that is absent
                      is left out of the sample instead of being a problem.
    """

    path: Path
    pattern: str = "*"
    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    node_type_field: str | None = None
    node_type_values: tuple[int, ...] = ()
    globals: tuple[str, ...] = ()
    targets_required: bool = True

    def __post_init__(self) -> None:
        # Accept lists (argparse, OmegaConf ListConfig) and strings for paths.
        object.__setattr__(self, "path", Path(self.path))
        for name in ("inputs", "targets", "globals"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        object.__setattr__(self, "node_type_field", self.node_type_field or None)
        try:
            values = tuple(int(v) for v in self.node_type_values)
        except (TypeError, ValueError):
            raise UserError(f"node_type_values {list(self.node_type_values)} must be integers "
                            "(data.node_type_values / --node-type-values)") from None
        object.__setattr__(self, "node_type_values", values)

        if not self.pattern:
            raise UserError("the file pattern is empty; use e.g. '*' or '**/*.vtu' "
                            "(data.pattern / --pattern)")
        if not self.targets:
            raise UserError(f"no target fields named for {self.path}; name the point_data fields "
                            f"to predict ({OPTION['target']})")
        if self.node_type_field and not values:
            raise UserError(f"node_type_field={self.node_type_field!r} is set but node_type_values is "
                            "empty; declare the field's values in one-hot order, interior kind first "
                            "(data.node_type_values / --node-type-values)")
        if values and not self.node_type_field:
            raise UserError(f"node_type_values {list(values)} are declared but node_type_field is not "
                            f"set; name the node-type field ({OPTION['node-type']}) or drop the values")
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        if repeated:
            raise UserError(f"node_type_values list {', '.join(map(str, repeated))} more than once; "
                            "declare each value once (data.node_type_values / --node-type-values)")
        names = [*self.inputs, *self.targets, *([self.node_type_field] if self.node_type_field else []),
                 *self.globals]
        repeated_names = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated_names:
            raise UserError(f"{', '.join(map(repr, repeated_names))} named more than once among the "
                            "inputs, targets, node-type field and globals; give each name one role")

    def roles(self) -> Iterator[tuple[str, str]]:
        """(role, name) of every point field: inputs, targets, then the node-type field."""
        yield from (("input", n) for n in self.inputs)
        yield from (("target", n) for n in self.targets)
        if self.node_type_field:
            yield "node-type", self.node_type_field

    def display_name(self, path: Path) -> str:
        """A file's name in messages: relative to the folder where it lies inside it."""
        try:
            return str(path.relative_to(self.path))
        except ValueError:
            return str(path)


def _component_names(name: str, dim: int) -> tuple[str, ...]:
    return (name,) if dim == 1 else tuple(f"{name}[{i}]" for i in range(dim))


def source_spec(spec: FolderSpec, dims: Mapping[str, int], spatial_dim: int) -> SourceSpec:
    """The SourceSpec of a folder, from the component counts `check_folder` inferred.

    A global given as a list of k > 1 numbers becomes k columns named "name[0]".."name[k-1]".
    """
    missing = [n for n in (*spec.inputs, *spec.targets) if n not in dims]
    if missing:
        raise UserError(f"no component count known for field(s) {', '.join(missing)} of {spec.path}; "
                        "run `meshgnn data check` on the folder and fix the problems it reports")
    node_types = (tuple(f"{spec.node_type_field}={v}" for v in spec.node_type_values)
                  if spec.node_type_field else ("node",))
    return SourceSpec(
        node_types=node_types,
        inputs=tuple(FieldSpec(n, int(dims[n])) for n in spec.inputs),
        targets=tuple(FieldSpec(n, int(dims[n])) for n in spec.targets),
        global_names=tuple(c for n in spec.globals for c in _component_names(n, int(dims.get(n, 1)))),
        spatial_dim=int(spatial_dim),
        has_baseline=False,
    )

