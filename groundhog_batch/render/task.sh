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

hog_env_failed() {
  echo "hog-batch: environment build failed: $*" >&2
  exit 97
}

# The cache is per user: HOG_BATCH_CACHE_DIR/hog-batch if that is set, else
# hog-batch-UID in $SCRATCH or the temp dir. Every directory in it is created 0700 and, before
# use, must be a real directory (not a symlink), owned by this user, and not
# writable by group or others: another user who pre-creates one cannot get
# their code run as this user.
hog_private_dir() {
  local dir="$1" mode
  if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then
    mkdir -m 700 "$dir" 2>/dev/null || [ -d "$dir" ] || hog_env_failed "cannot create $dir"
  fi
  if [ -L "$dir" ] || [ ! -d "$dir" ]; then
    hog_env_failed "$dir is not a directory (a symlink or a file is there); remove it, or set HOG_BATCH_CACHE_DIR to a directory of your own"
  fi
  if [ ! -O "$dir" ]; then
    hog_env_failed "$dir belongs to another user; remove it, or set HOG_BATCH_CACHE_DIR to a directory of your own"
  fi
  mode="$(stat -c %a "$dir" 2>/dev/null || stat -f %Lp "$dir")" || hog_env_failed "cannot read the permissions of $dir"
  if [ $((8#$mode & 8#022)) -ne 0 ]; then
    hog_env_failed "$dir is writable by other users (mode $mode); run chmod 700 on it, or set HOG_BATCH_CACHE_DIR to a private directory"
  fi
}

# A lock file in a private directory, never followed through a symlink, never truncated.
hog_lock() {
  local lock="$1"
  if [ -L "$lock" ]; then hog_env_failed "$lock is a symlink; remove it"; fi
  exec 9>>"$lock" || hog_env_failed "cannot open the lock $lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
}

# uv: HOG_BATCH_UV, uv on PATH, the usual install places, or bootstrapped once per
# user with the endpoint's Python (pip install --target, published with one rename),
# or the uv Python package's own binary. Nothing else is assumed but bash and Python.
hog_find_uv() {
  if [ -n "${HOG_BATCH_UV:-}" ] && [ -x "$HOG_BATCH_UV" ]; then printf '%s\n' "$HOG_BATCH_UV"; return 0; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return 0; fi
  for candidate in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
    if [ -x "$candidate" ]; then printf '%s\n' "$candidate"; return 0; fi
  done
  local python bootstrap build found
  python="${HOG_BATCH_ENDPOINT_PYTHON:-}"
  if [ -z "$python" ] || [ ! -x "$python" ]; then python="$(command -v python3 || command -v python || true)"; fi
  [ -n "$python" ] || hog_env_failed "neither uv nor a Python to install it with is on PATH; add one to worker_init"
  bootstrap="$hog_base/uv-bootstrap"
  if [ ! -x "$bootstrap/bin/uv" ]; then
    if [ -L "$hog_base/uv-bootstrap.lock" ]; then hog_env_failed "$hog_base/uv-bootstrap.lock is a symlink; remove it"; fi
    exec 8>>"$hog_base/uv-bootstrap.lock" || hog_env_failed "cannot open the lock $hog_base/uv-bootstrap.lock"
    if command -v flock >/dev/null 2>&1; then flock 8; fi
    if [ ! -x "$bootstrap/bin/uv" ]; then
      build="$(mktemp -d "$hog_base/.uv-bootstrap.XXXXXX")"
      echo "hog-batch: no uv here; installing it for $(id -un) with $python -m pip" >&2
      if "$python" -m pip install --quiet --disable-pip-version-check --target "$build/uv" uv >&2 &&
        [ -x "$build/uv/bin/uv" ]; then
        rm -rf "$bootstrap"
        mv -T "$build/uv" "$bootstrap" || hog_env_failed "cannot publish uv at $bootstrap"
      fi
      rm -rf "$build"
    fi
    exec 8>&-
  fi
  if [ -x "$bootstrap/bin/uv" ]; then printf '%s\n' "$bootstrap/bin/uv"; return 0; fi
  found="$("$python" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)"
  if [ -n "$found" ] && [ -x "$found" ]; then printf '%s\n' "$found"; return 0; fi
  hog_env_failed "uv is not installed here and could not be installed with $python -m pip; install uv (pip install uv) or add it to worker_init"
}

# Build the environment in a temp dir and publish it with one rename, under a
# lock, so concurrent tasks build it once and nobody sees half an environment.
hog_build_env() {
  hog_lock "$hog_envs/$hog_env_id.lock"
  if [ -f "$hog_env/.hog-complete" ]; then exec 9>&-; return 0; fi
  # What uv needs to build the environment (written only when it is built: most tasks find it ready).
  cat > "$hog_tmp/requirements.txt" <<'@@REQUIREMENTS_EOF@@'
@@REQUIREMENTS_TEXT@@
@@REQUIREMENTS_EOF@@
  cat > "$hog_tmp/uv.toml" <<'@@UV_TOML_EOF@@'
@@UV_TOML_TEXT@@
@@UV_TOML_EOF@@
  local uv build
  uv="$(hog_find_uv)"
  build="$(mktemp -d "$hog_envs/.build-$hog_env_id.XXXXXX")"
  local python_args=()
  if [ -n "$hog_requires_python" ]; then python_args=(--python "$hog_requires_python"); fi
  export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-@@PYTHON_DOWNLOADS@@}"
  if ! {
    "$uv" --config-file "$hog_tmp/uv.toml" venv --quiet --relocatable ${python_args[@]+"${python_args[@]}"} "$build/env" &&
      { [ ! -s "$hog_tmp/requirements.txt" ] ||
        "$uv" --config-file "$hog_tmp/uv.toml" pip install --quiet --compile-bytecode --python "$build/env/bin/python" -r "$hog_tmp/requirements.txt"; } &&
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
if [ -n "${HOG_BATCH_CACHE_DIR:-}" ]; then
  mkdir -p "$HOG_BATCH_CACHE_DIR" || hog_env_failed "cannot create HOG_BATCH_CACHE_DIR=$HOG_BATCH_CACHE_DIR"
  hog_base="$HOG_BATCH_CACHE_DIR/hog-batch"
else
  hog_base="${SCRATCH:-${TMPDIR:-/tmp}}/hog-batch-${UID}"
fi
hog_envs="$hog_base/envs"
hog_env="$hog_envs/$hog_env_id"
hog_private_dir "$hog_base"
hog_private_dir "$hog_envs"
if [ ! -f "$hog_env/.hog-complete" ]; then
  hog_build_env
fi
hog_private_dir "$hog_env"

cat > "$hog_tmp/payload.b64" <<'@@PAYLOAD_EOF@@'
@@PAYLOAD@@
@@PAYLOAD_EOF@@

set +e
"$hog_env/bin/python" "$hog_tmp/hog_runner.py" "$hog_tmp"/@@SCRIPT_FILE@@ "$hog_tmp/payload.b64"
hog_status=$?
exit "$hog_status"
