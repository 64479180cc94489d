#!/usr/bin/env bash
# hog-batch: Slurm array @@NAME@@, rendered by hog-batch @@VERSION@@.
# Element i runs task i of the list below: bash TASK.sh, byte for byte the
# script a local run of that task runs. The task's stdout, stderr, records
# and exit status go beside its script, on a filesystem the nodes share.
# Slurm's warning signal (SIGTERM to this shell before the walltime) reaches
# the task's runner as SIGUSR1: finish the running call, start no new one.
umask 077
hog_dir=@@TASK_DIR@@
hog_tasks=(@@TASK_IDS@@)
hog_secrets=(@@SECRETS@@)
hog_index="${SLURM_ARRAY_TASK_ID:-0}"
hog_task="${hog_tasks[$hog_index]}"
# worker_init
@@WORKER_INIT@@
# end of worker_init
export HOG_BATCH_RECORDS_FILE="$hog_dir/$hog_task.records"
# The records secret reaches the runner on a descriptor it empties and closes, never in an environment.
exec 10< <(printf '%s\n' "${hog_secrets[$hog_index]}")
export HOG_BATCH_RECORDS_SECRET_FD=10
unset hog_secrets
trap '' USR1
setsid bash "$hog_dir/$hog_task.sh" >"$hog_dir/$hog_task.out" 2>"$hog_dir/$hog_task.stderr" </dev/null &
hog_child=$!
exec 10<&-
trap 'kill -USR1 -- "-$hog_child" 2>/dev/null || kill -USR1 "$hog_child" 2>/dev/null' TERM
wait "$hog_child"
hog_status=$?
while kill -0 "$hog_child" 2>/dev/null; do
  wait "$hog_child"
  hog_status=$?
done
printf '%s\n' "$hog_status" >"$hog_dir/.$hog_task.exit" && mv -f "$hog_dir/.$hog_task.exit" "$hog_dir/$hog_task.exit"
exit "$hog_status"
