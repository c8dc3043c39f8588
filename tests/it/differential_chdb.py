"""The current-engine half of the differential test (tests/it/differential.rs):
runs the steps it is given on chdb, which embeds a current ClickHouse, and
prints what each query answered.

Input (stdin), JSON: {"steps": [{"name", "kind", "sql"}]}, where kind is
  "script"  several statements (a fixture or migration file, already
            rendered), split as the daemon splits migrations: comment lines
            dropped, a statement ends at a line ending in `;`;
  "exec"    one statement, its answer ignored;
  "query"   one statement whose answer (TabSeparated) is returned.
Output (stdout), JSON: {"version": "...", "results": {name: text}}, or
{"error": "..."} naming the step that failed.
"""

import json
import sys

from chdb import session


def statements(sql):
    out, current = [], []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            continue
        current.append(line)
        if stripped.endswith(";"):
            out.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    rest = "\n".join(current).strip()
    if rest:
        out.append(rest)
    return out


def main():
    steps = json.load(sys.stdin)["steps"]
    s = session.Session()
    version = s.query("SELECT version()", "TabSeparated").bytes().decode().strip()
    results = {}
    for step in steps:
        try:
            if step["kind"] == "script":
                for statement in statements(step["sql"]):
                    s.query(statement, "TabSeparated")
            elif step["kind"] == "exec":
                s.query(step["sql"], "TabSeparated")
            else:
                results[step["name"]] = s.query(step["sql"], "TabSeparated").bytes().decode()
        except Exception as e:  # chdb raises its own error types
            json.dump({"error": f"{step['name']}: {str(e).splitlines()[0]}"}, sys.stdout)
            return 0
    json.dump({"version": version, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
