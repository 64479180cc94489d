"""Provenance: where the run came from (manifest, versions, git commit, environment, endpoint, data-file hashes)."""

from __future__ import annotations

from .data import ReportData


def provenance_items(data: ReportData) -> list[tuple[str, str]]:
    """(label, value) pairs, from run.json as the run recorded it when it started."""
    info = data.info
    prov = info.get("provenance", {})
    items = [
        ("run directory", data.root),
        ("manifest", str(info.get("manifest_path", ""))),
        ("overrides (--set)", ", ".join(info.get("overrides") or []) or "none"),
        ("endpoint", _endpoints(info)),
        ("started", str(prov.get("started_at", "?"))),
        ("command", " ".join(str(a) for a in prov.get("argv", []))),
        ("hog-batch", str(prov.get("hog_batch_version", "?"))),
        ("Python (submitter)", str(prov.get("python", "?"))),
        ("platform", str(prov.get("platform", "?"))),
        ("host and user", f"{prov.get('host', '?')}, {prov.get('user', '?')}"),
    ]
    for job, script in prov.get("scripts", {}).items():
        commit = script.get("git_commit") or "not in a git repository"
        items.append(
            (
                f"script of {job}",
                f"{script.get('path')}\nsha256 {script.get('sha256')}\ngit commit {commit}",
            )
        )
    for job, env in prov.get("environments", {}).items():
        deps = ", ".join(env.get("dependencies") or []) or "no dependencies"
        items.append(
            (
                f"environment of {job}",
                f"{env.get('env_id')}: Python {env.get('requires_python') or 'any'}; {deps}",
            )
        )
    data_files = prov.get("data_files") or {}
    for path, digest in data_files.items():
        items.append(("data file", f"{path}\nsha256 {digest}"))
    if not data_files:
        items.append(("data files", "none"))
    if info.get("output"):
        items.append(("results file", str(info["output"])))
    return items


def _endpoints(info: dict) -> str:
    jobs = info.get("jobs", [])
    found = dict.fromkeys(str(job.get("endpoint")) for job in jobs)
    return ", ".join(found) or "?"
