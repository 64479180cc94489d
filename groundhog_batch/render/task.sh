#!/usr/bin/env bash
# hog-batch task of job @@JOB_COMMENT@@, rendered by hog-batch @@VERSION@@.
# It writes the script, the runner and the payload to a private temp dir,
# gets the uv environment @@ENV_ID@@ (built once per cache, then reused),
# and runs the calls. Results follow the line @@DELIMITER@@ on stdout.
# What it trusts, and what it refuses to: docs/running.md, "What a task trusts".
set -euo pipefail
umask 077

# An empty or relative PATH entry means the working directory, which may be shared: drop those.
hog_path="" hog_rest="${PATH:-}:"
while [ -n "$hog_rest" ]; do
  case "${hog_rest%%:*}" in /*) hog_path="${hog_path:+$hog_path:}${hog_rest%%:*}" ;; esac
  hog_rest="${hog_rest#*:}"
done
export PATH="${hog_path:-/usr/bin:/bin}"
unset hog_path hog_rest

hog_tmp="$(mktemp -d "${TMPDIR:-/tmp}/hog-task.XXXXXXXXXX")"
hog_locks=()
hog_cleanup() {
  local lock
  for lock in ${hog_locks[@]+"${hog_locks[@]}"}; do hog_unlock "$lock"; done
  rm -rf "$hog_tmp"
}
trap hog_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# A small file is written by bash itself (printf of a quoted string: no process started for it), a large
# one by cat from a heredoc (bash reads a heredoc three times faster than a quoted word that long).
@@WRITE_SCRIPT@@

hog_env_failed() {
  echo "hog-batch: environment build failed: $*" >&2
  exit 97
}

# Every directory of the cache is created 0700 and, before use, must be a real
# directory (not a symlink), owned by this user, and not writable by group or
# others: another user who pre-creates one cannot get their code run as this user.
hog_private_dir() {
  local dir="$1"
  if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then
    mkdir -m 700 "$dir" 2>/dev/null || [ -d "$dir" ] || hog_env_failed "cannot create $dir"
  fi
  if [ -L "$dir" ] || [ ! -d "$dir" ]; then
    hog_env_failed "$dir is not a directory (a symlink or a file is there); remove it, or set HOG_BATCH_CACHE_DIR to a directory of your own"
  fi
  hog_owned_dir "$dir"
}

# A directory you named yourself (HOG_BATCH_CACHE_DIR, UV_CACHE_DIR, ...): it may be a
# symlink, but what it leads to must be yours and not writable by others.
# Its mode is read by hog_check_modes, which each use of the directories comes after: one stat for all.
hog_unchecked=()
hog_owned_dir() {
  local dir="$1"
  if [ ! -d "$dir" ]; then
    mkdir -p -m 700 "$dir" 2>/dev/null || [ -d "$dir" ] || hog_env_failed "cannot create $dir"
  fi
  if [ ! -O "$dir" ]; then
    hog_env_failed "$dir belongs to another user; remove it, or set HOG_BATCH_CACHE_DIR to a directory of your own"
  fi
  hog_unchecked+=("$dir")
}

# None of the directories hog_owned_dir has seen may be writable by group or others.
hog_check_modes() {
  local modes mode i=0
  [ ${#hog_unchecked[@]} -gt 0 ] || return 0
  modes="$(stat -L -c %a "${hog_unchecked[@]}" 2>/dev/null)" ||
    modes="$(stat -L -f %Lp "${hog_unchecked[@]}" 2>/dev/null)" ||
    hog_env_failed "cannot read the permissions of ${hog_unchecked[*]}"
  for mode in $modes; do
    if [[ ! $mode =~ ^[0-7]+$ ]] || [ "$i" -ge ${#hog_unchecked[@]} ]; then
      hog_env_failed "cannot read the permissions of ${hog_unchecked[*]} (stat said: $modes)"
    fi
    if [ $((8#$mode & 8#022)) -ne 0 ]; then
      hog_env_failed "${hog_unchecked[i]} is writable by other users (mode $mode); run chmod 700 on it, or set HOG_BATCH_CACHE_DIR to a private directory"
    fi
    i=$((i + 1))
  done
  if [ "$i" -ne ${#hog_unchecked[@]} ]; then
    hog_env_failed "cannot read the permissions of ${hog_unchecked[*]} (stat said: $modes)"
  fi
  hog_unchecked=()
}

# Locks are directories: mkdir is atomic on NFS and Lustre, where flock may do
# nothing. The holder writes "host pid" into it and a heartbeat that changes every
# few seconds. A waiter breaks the lock (one rename, so only one waiter does) when
# the holder was on this host and is gone, or when the heartbeat has not changed
# for HOG_BATCH_LOCK_STALE_S seconds (default 60) of the waiter's own clock, so
# clocks that differ between nodes do not matter. A waiter gives up after
# HOG_BATCH_LOCK_WAIT_S (default 3600). hog_lock LOCK READY returns 1, without
# the lock, as soon as the file READY exists: someone else did the work.
hog_host="${HOSTNAME:-$(uname -n)}"
hog_lock() {
  local lock="$1" ready="${2:-}" stale_s="${HOG_BATCH_LOCK_STALE_S:-60}" wait_s="${HOG_BATCH_LOCK_WAIT_S:-3600}"
  local started=$SECONDS beat="" seen="" seen_at=$SECONDS owner pid pause=0.1 beat_s=5
  if [ -L "$lock" ]; then hog_env_failed "$lock is a symlink; remove it"; fi
  if [ -f "$lock" ]; then rm -f "$lock"; fi  # the lock file of an older hog-batch
  while ! mkdir -m 700 "$lock" 2>/dev/null; do
    if [ -L "$lock" ] || { [ -e "$lock" ] && [ ! -d "$lock" ]; }; then hog_env_failed "$lock is not a lock directory; remove it"; fi
    if [ -n "$ready" ] && [ -e "$ready" ]; then return 1; fi
    if [ -d "$lock" ]; then
      owner="$(cat "$lock/owner" 2>/dev/null || true)"
      pid="${owner#* }"
      if [ "${owner%% *}" = "$hog_host" ] && [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
        hog_break_lock "$lock" "its holder, process $pid on this host, is gone"
        continue
      fi
      beat="$(cat "$lock/beat" 2>/dev/null || true)"
      if [ "$beat" != "$seen" ]; then
        seen="$beat" seen_at=$SECONDS
      elif [ $((SECONDS - seen_at)) -ge "$stale_s" ]; then
        hog_break_lock "$lock" "held by ${owner:-nobody known} with no sign of life for ${stale_s} s"
        seen="" seen_at=$SECONDS
        continue
      fi
    fi
    if [ $((SECONDS - started)) -ge "$wait_s" ]; then
      hog_env_failed "waited ${wait_s} s for the lock $lock (held by ${owner:-?}); if no task is building, remove it"
    fi
    sleep "$pause"
    case "$pause" in 0.1) pause=0.3 ;; 0.3) pause=1 ;; esac
  done
  printf '%s %s\n' "$hog_host" "$$" > "$lock/owner"
  if [ "$stale_s" -lt 20 ]; then beat_s=1; fi
  (
    n=0
    while kill -0 "$$" 2>/dev/null && [ -d "$lock" ]; do
      n=$((n + 1))
      printf '%s\n' "$n" > "$lock/beat.tmp" && mv -f "$lock/beat.tmp" "$lock/beat" || exit 0
      sleep "$beat_s"
    done
  ) </dev/null >/dev/null 2>&1 &
  printf '%s\n' "$!" > "$lock/heartbeat.pid"
  hog_locks+=("$lock")
}

hog_break_lock() {
  local lock="$1" aside="$1.stale.$$.$RANDOM"
  if mv -T "$lock" "$aside" 2>/dev/null; then
    echo "hog-batch: removed the lock $lock: $2" >&2
    rm -rf "$aside"
  fi
}

# Release a lock this task holds (and only if it is still this task's).
hog_unlock() {
  local lock="$1" aside="$1.done.$$" kept=() held
  [ -d "$lock" ] || return 0
  if [ -f "$lock/heartbeat.pid" ]; then kill "$(cat "$lock/heartbeat.pid")" 2>/dev/null || true; fi
  if [ "$(cat "$lock/owner" 2>/dev/null)" = "$hog_host $$" ] && mv -T "$lock" "$aside" 2>/dev/null; then
    rm -rf "$aside"
  fi
  for held in ${hog_locks[@]+"${hog_locks[@]}"}; do [ "$held" = "$lock" ] || kept+=("$held"); done
  hog_locks=(${kept[@]+"${kept[@]}"})
}

# uv runs with only the configuration this task gives it: --no-config (no uv.toml,
# pyproject.toml or .python-version from any folder, nor user or system config),
# its own --config-file (the script's [tool.uv]), an explicit --python, a private
# working directory, and of the environment's UV_* variables only those that say
# how to reach an index (listed here); hog-batch sets the cache and Python places.
HOG_UV_HONOURED="UV_OFFLINE UV_INDEX UV_DEFAULT_INDEX UV_INDEX_URL UV_EXTRA_INDEX_URL UV_FIND_LINKS
  UV_NATIVE_TLS UV_SYSTEM_CERTS UV_HTTP_TIMEOUT UV_HTTP_RETRIES UV_KEYRING_PROVIDER UV_INSECURE_HOST
  UV_PYTHON_INSTALL_MIRROR UV_CONCURRENT_DOWNLOADS UV_CONCURRENT_BUILDS UV_CONCURRENT_INSTALLS"
hog_uv() {
  (
    cd "$hog_tmp"
    local name
    for name in ${!UV_@}; do
      case " ${HOG_UV_HONOURED//$'\n'/ } " in *" $name "*) ;; *) unset "$name" ;; esac
    done
    for name in ${!PYTHON@} VIRTUAL_ENV CONDA_PREFIX; do unset "$name"; done
    export UV_CACHE_DIR="$hog_uv_cache" UV_PYTHON_INSTALL_DIR="$hog_uv_pythons"
    export UV_PYTHON_DOWNLOADS="$hog_python_downloads" UV_NO_PROGRESS=1
    exec "$hog_uv_bin" --no-config --config-file "$hog_tmp/uv.toml" "$@"
  )
}

# A uv new enough for the flags used here (0.2.30, say, lacks --relocatable).
hog_uv_ok() {
  local out
  out="$("$1" --version 2>/dev/null)" || return 1
  if [[ $out =~ ^uv\ ([0-9]+)\.([0-9]+)\. ]] &&
    [ $((BASH_REMATCH[1] * 1000 + BASH_REMATCH[2])) -ge $((@@UV_MIN_MAJOR@@ * 1000 + @@UV_MIN_MINOR@@)) ]; then
    return 0
  fi
  echo "hog-batch: ${out:-an unknown uv} at $1 is older than @@UV_MIN_MAJOR@@.@@UV_MIN_MINOR@@; looking for another" >&2
  return 1
}

# uv: HOG_BATCH_UV, uv on PATH, the usual install places, the one bootstrapped
# before, the uv Python package of the endpoint's Python, or uv @@UV_BOOTSTRAP_VERSION@@
# installed once per user with that Python (pip install --target, published with
# one rename). Each must be new enough. Nothing else is assumed but bash and Python.
hog_find_uv() {
  local candidate python bootstrap="$hog_base/uv-bootstrap" build found
  for candidate in "${HOG_BATCH_UV:-}" "$(command -v uv || true)" "${HOME:-/nonexistent}/.local/bin/uv" \
    "${HOME:-/nonexistent}/.cargo/bin/uv" "$bootstrap/bin/uv"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && hog_uv_ok "$candidate"; then
      hog_uv_bin="$candidate"
      return 0
    fi
  done
  python="$(hog_endpoint_python)"
  [ -n "$python" ] || hog_env_failed "neither uv nor a Python to install it with is on PATH; add one to worker_init"
  found="$(cd "$hog_tmp" && "$python" -E -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)"
  if [ -n "$found" ] && [ -x "$found" ] && hog_uv_ok "$found"; then
    hog_uv_bin="$found"
    return 0
  fi
  if hog_lock "$hog_base/uv-bootstrap.lock"; then
    if ! { [ -x "$bootstrap/bin/uv" ] && hog_uv_ok "$bootstrap/bin/uv"; }; then
      build="$(mktemp -d "$hog_base/.uv-bootstrap.XXXXXX")"
      echo "hog-batch: no usable uv here; installing uv @@UV_BOOTSTRAP_VERSION@@ for $(id -un) with $python -m pip" >&2
      if (cd "$hog_tmp" && "$python" -E -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$build/uv" "uv==@@UV_BOOTSTRAP_VERSION@@" >&2) && [ -x "$build/uv/bin/uv" ]; then
        if [ -e "$bootstrap" ]; then mv -T "$bootstrap" "$build/old"; fi
        mv -T "$build/uv" "$bootstrap" || hog_env_failed "cannot publish uv at $bootstrap"
      fi
      rm -rf "$build"
    fi
    hog_unlock "$hog_base/uv-bootstrap.lock"
  fi
  if [ -x "$bootstrap/bin/uv" ] && hog_uv_ok "$bootstrap/bin/uv"; then
    hog_uv_bin="$bootstrap/bin/uv"
    return 0
  fi
  hog_env_failed "no uv @@UV_MIN_MAJOR@@.@@UV_MIN_MINOR@@ or newer here, and uv could not be installed with $python -m pip; install uv (pip install uv) or add it to worker_init"
}

# The Python that runs the endpoint (or the submitter, locally), else python3 on PATH.
hog_endpoint_python() {
  if [ -n "${HOG_BATCH_ENDPOINT_PYTHON:-}" ] && [ -x "$HOG_BATCH_ENDPOINT_PYTHON" ]; then
    printf '%s\n' "$HOG_BATCH_ENDPOINT_PYTHON"
  else
    command -v python3 || command -v python || true
  fi
}

# Build the environment in a temp dir and publish it with one rename, under a
# lock, so concurrent tasks build it once and nobody sees half an environment.
hog_build_env() {
  hog_lock "$hog_envs/$hog_env_id.lock" "$hog_env/.hog-complete" || return 0
  if [ -f "$hog_env/.hog-complete" ]; then
    hog_unlock "$hog_envs/$hog_env_id.lock"
    return 0
  fi
  rm -rf "$hog_envs/.build-$hog_env_id".*  # left by a builder that died; the lock is ours now
  # What uv needs to build the environment (written only when it is built: most tasks find it ready).
  cat > "$hog_tmp/requirements.txt" <<'@@REQUIREMENTS_EOF@@'
@@REQUIREMENTS_TEXT@@
@@REQUIREMENTS_EOF@@
  cat > "$hog_tmp/uv.toml" <<'@@UV_TOML_EOF@@'
@@UV_TOML_TEXT@@
@@UV_TOML_EOF@@
  if [ -z "${hog_uv_cache:-}" ]; then
    hog_uv_cache="$hog_root/uv"
    hog_private_dir "$hog_uv_cache"
  fi
  if [ -z "${hog_uv_pythons:-}" ]; then
    hog_uv_pythons="$hog_root/uv/python"
    hog_private_dir "$hog_root/uv"
    hog_private_dir "$hog_uv_pythons"
  fi
  hog_check_modes
  hog_find_uv
  local build python_request
  if [ -n "$hog_requires_python" ]; then
    python_request="$hog_requires_python"
    if [ "$hog_python_downloads" != automatic ] && ! hog_uv python find "$python_request" >/dev/null 2>&1; then
      hog_env_failed "no Python on this node satisfies requires-python \"$hog_requires_python\" (uv looked in $hog_uv_pythons and on PATH); load one in worker_init, or set python_downloads: true in the manifest to let uv install a managed Python under $hog_uv_pythons"
    fi
  else
    python_request="$(hog_endpoint_python)"
    [ -n "$python_request" ] || hog_env_failed "no Python on PATH for a script without requires-python; add one to worker_init or give the script a requires-python"
  fi
  build="$(mktemp -d "$hog_envs/.build-$hog_env_id.XXXXXX")"
  # The submitter's own build before the tasks start (HOG_BATCH_ENV_PROGRESS=1) shows what uv does.
  hog_uv_quiet=--quiet
  if [ "${HOG_BATCH_ENV_PROGRESS:-}" = 1 ]; then hog_uv_quiet=""; fi
  if ! {
    hog_uv venv --quiet --relocatable --no-project --python "$python_request" "$build/env" &&
      { [ ! -s "$hog_tmp/requirements.txt" ] ||
        hog_uv pip install ${hog_uv_quiet:+"$hog_uv_quiet"} --compile-bytecode --python "$build/env/bin/python" -r "$hog_tmp/requirements.txt"; } &&
      touch "$build/env/.hog-complete"
  } >&2; then
    rm -rf "$build"
    hog_env_failed "uv could not build the environment (see the messages above)"
  fi
  if [ -e "$hog_env" ] && [ ! -f "$hog_env/.hog-complete" ]; then mv -T "$hog_env" "$build/broken"; fi
  if ! mv -T "$build/env" "$hog_env" 2>/dev/null && [ ! -f "$hog_env/.hog-complete" ]; then
    rm -rf "$build"
    hog_env_failed "cannot publish the environment at $hog_env"
  fi
  rm -rf "$build"
  hog_unlock "$hog_envs/$hog_env_id.lock"
}

# The cache, as Groundhog lays it out: ROOT/uv holds uv's cache (UV_CACHE_DIR) and
# the Pythons uv installs (UV_PYTHON_INSTALL_DIR, ROOT/uv/python), ROOT/hog-batch the
# environments. ROOT is HOG_BATCH_CACHE_DIR if set, else $USER's folder in
# GROUNDHOG_CACHE_DIR, SCRATCH, TMPDIR or /tmp: off NFS home directories and quotas.
# UV_CACHE_DIR and UV_PYTHON_INSTALL_DIR you set yourself are kept (and checked).
hog_env_id=@@ENV_ID@@
hog_requires_python=@@REQUIRES_PYTHON@@
hog_python_downloads=@@PYTHON_DOWNLOADS@@
if [ -n "${HOG_BATCH_CACHE_DIR:-}" ]; then
  hog_root="$HOG_BATCH_CACHE_DIR"
  hog_owned_dir "$hog_root"
else
  # $USER, else this user's name as bash's prompt expansion of \u reads it (bash 4.4 on: no process
  # started for it); `id -un` on an older bash, or when the user database has no name for the uid.
  hog_user="${USER:-}"
  if [ -z "$hog_user" ] && ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 4))); then
    hog_user='\u'
    hog_user="${hog_user@P}"
    if [ "$hog_user" = "I have no name!" ]; then hog_user=""; fi
  fi
  hog_root="${GROUNDHOG_CACHE_DIR:-${SCRATCH:-${TMPDIR:-/tmp}}}/${hog_user:-$(id -un)}"
  hog_private_dir "$hog_root"
fi
hog_uv_cache="${UV_CACHE_DIR:-}"
hog_uv_pythons="${UV_PYTHON_INSTALL_DIR:-}"
hog_base="$hog_root/hog-batch"
hog_envs="$hog_base/envs"
hog_env="$hog_envs/$hog_env_id"
hog_private_dir "$hog_base"
hog_private_dir "$hog_envs"
if [ ! -f "$hog_env/.hog-complete" ]; then
  if [ -n "$hog_uv_cache" ]; then hog_owned_dir "$hog_uv_cache"; fi
  if [ -n "$hog_uv_pythons" ]; then hog_owned_dir "$hog_uv_pythons"; fi
  hog_check_modes
  hog_build_env
fi
hog_private_dir "$hog_env"
hog_check_modes

@@WRITE_PAYLOAD@@

# The runner's bytecode is kept in the environment by the first task that runs it there (its name says
# which runner: one file per version): later tasks start it without compiling it again.
hog_runner="$hog_env/.hog-runner-@@RUNNER_ID@@.pyc"
if [ -f "$hog_runner" ] && [ ! -L "$hog_runner" ]; then
  hog_run=("$hog_runner" "$hog_tmp"/@@SCRIPT_FILE@@ "$hog_tmp/payload.b64")
else
  @@WRITE_RUNNER@@
  hog_run=("$hog_tmp/hog_runner.py" "$hog_tmp"/@@SCRIPT_FILE@@ "$hog_tmp/payload.b64" "$hog_runner")
fi

# -s: no user site-packages (nor their .pth files); PYTHONHOME would point the environment's
# Python at another installation. PYTHONPATH is yours and kept (helper modules beside a script).
unset PYTHONHOME
set +e
"$hog_env/bin/python" -s "${hog_run[@]}"
hog_status=$?
exit "$hog_status"
