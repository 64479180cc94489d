#!/usr/bin/env bash
# hog-batch task of job @@JOB_COMMENT@@, rendered by hog-batch @@VERSION@@.
# It writes the script, the runner and the payload to a private temp dir,
# gets the uv environment @@ENV_ID@@ (built once per cache, then reused),
# and runs the calls. Results follow the line @@DELIMITER@@ on stdout.
set -euo pipefail
umask 077

hog_tmp="$(mktemp -d "${TMPDIR:-/tmp}/hog-task.XXXXXXXXXX")"
trap 'rm -rf "$hog_tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

cat > "$hog_tmp"/@@SCRIPT_FILE@@ <<'@@SCRIPT_EOF@@'
@@SCRIPT_TEXT@@
@@SCRIPT_EOF@@

cat > "$hog_tmp/hog_runner.py" <<'@@RUNNER_EOF@@'
@@RUNNER_TEXT@@
@@RUNNER_EOF@@

cat > "$hog_tmp/requirements.txt" <<'@@REQUIREMENTS_EOF@@'
@@REQUIREMENTS_TEXT@@
@@REQUIREMENTS_EOF@@

cat > "$hog_tmp/uv.toml" <<'@@UV_TOML_EOF@@'
@@UV_TOML_TEXT@@
@@UV_TOML_EOF@@

hog_env_failed() {
  echo "hog-batch: environment build failed: $*" >&2
  exit 97
}

hog_find_uv() {
  if [ -n "${HOG_BATCH_UV:-}" ] && [ -x "$HOG_BATCH_UV" ]; then printf '%s\n' "$HOG_BATCH_UV"; return 0; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return 0; fi
  for candidate in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
    if [ -x "$candidate" ]; then printf '%s\n' "$candidate"; return 0; fi
  done
  hog_env_failed "uv is not installed here; install it (pip install uv) or add it to worker_init"
}

# Build the environment in a temp dir and publish it with one rename, under a
# lock, so concurrent tasks build it once and nobody sees half an environment.
hog_build_env() {
  mkdir -p "$hog_envs" || hog_env_failed "cannot create $hog_envs"
  exec 9>"$hog_envs/$hog_env_id.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ -f "$hog_env/.hog-complete" ]; then exec 9>&-; return 0; fi
  local uv build
  uv="$(hog_find_uv)"
  build="$(mktemp -d "$hog_envs/.build-$hog_env_id.XXXXXX")"
  local python_args=()
  if [ -n "$hog_requires_python" ]; then python_args=(--python "$hog_requires_python"); fi
  export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-@@PYTHON_DOWNLOADS@@}"
  if ! {
    "$uv" --config-file "$hog_tmp/uv.toml" venv --quiet --relocatable ${python_args[@]+"${python_args[@]}"} "$build/env" &&
      { [ ! -s "$hog_tmp/requirements.txt" ] ||
        "$uv" --config-file "$hog_tmp/uv.toml" pip install --quiet --python "$build/env/bin/python" -r "$hog_tmp/requirements.txt"; } &&
      touch "$build/env/.hog-complete"
  } >&2; then
    rm -rf "$build"
    hog_env_failed "uv could not build the environment (see the messages above)"
  fi
  rm -rf "$hog_env"
  if ! mv -T "$build/env" "$hog_env" 2>/dev/null && [ ! -f "$hog_env/.hog-complete" ]; then
    rm -rf "$build"
    hog_env_failed "cannot publish the environment at $hog_env"
  fi
  rm -rf "$build"
  exec 9>&-
}

hog_env_id=@@ENV_ID@@
hog_requires_python=@@REQUIRES_PYTHON@@
hog_envs="${HOG_BATCH_CACHE_DIR:-${SCRATCH:-${TMPDIR:-/tmp}}}/hog-batch/envs"
hog_env="$hog_envs/$hog_env_id"
if [ ! -f "$hog_env/.hog-complete" ]; then
  hog_build_env
fi

cat > "$hog_tmp/payload.b64" <<'@@PAYLOAD_EOF@@'
@@PAYLOAD@@
@@PAYLOAD_EOF@@

set +e
"$hog_env/bin/python" "$hog_tmp/hog_runner.py" "$hog_tmp"/@@SCRIPT_FILE@@ "$hog_tmp/payload.b64"
hog_status=$?
exit "$hog_status"
