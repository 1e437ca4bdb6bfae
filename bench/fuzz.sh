#!/usr/bin/env bash
# Runs every libFuzzer target for a given time and reports, per target, the
# executions, libFuzzer's coverage (cov: edges, ft: features, as a replay of
# the final corpus counts them), the corpus size and the crashes, leaks,
# timeouts and out-of-memory inputs it found.
#
#   bench/fuzz.sh SECONDS [TARGET...]     e.g. bench/fuzz.sh 600
#
# TARGET: fuzz_device, fuzz_journal, ... (default: every fuzz_* in the fuzz
# build). Each runs in libFuzzer's fork mode with one worker, going on after
# a crash (-ignore_crashes etc.), so the counts are over the whole time. It
# starts from the seed corpus (tests/fuzz/corpus/<target>, never modified)
# and the dictionary tests/fuzz/dict/<target>.dict when there is one.
#
# Environment: VPP_FUZZ_DIR   the fuzz build (default build-fuzz, made by
#                             deploy/local/bootstrap.sh; `ninja -C DIR fuzz`)
#              VPP_FUZZ_JOBS  targets run at once (default 1; at most the cores)
#              VPP_FUZZ_OUT   where corpora, artifacts and logs go (default a
#                             new folder under $TMPDIR)
# The last lines are a Markdown table for bench/RESULTS.md. Exit status 1
# when any target found a crash, leak, timeout or OOM (inputs in
# OUT/<target>.artifacts/), 2 on bad arguments.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
case "${1:-}" in
-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
'' | *[!0-9]*) echo "usage: bench/fuzz.sh SECONDS [TARGET...] (see --help)" >&2; exit 2 ;;
esac
secs="$1"
shift
FUZZ="${VPP_FUZZ_DIR:-$ROOT/build-fuzz}"
jobs="${VPP_FUZZ_JOBS:-1}"
out="${VPP_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vpp-fuzz.XXXXXX")}"
mkdir -p "$out"

targets=()
if (($#)); then
	targets=("$@")
else
	for exe in "$FUZZ"/tests/fuzz/fuzz_*; do
		[ -f "$exe" ] && [ -x "$exe" ] && targets+=("$(basename "$exe")")
	done
fi
if ((${#targets[@]} == 0)); then
	echo "bench/fuzz.sh: no fuzz targets in $FUZZ/tests/fuzz (build them: ninja -C $FUZZ fuzz)" >&2
	exit 2
fi
for t in "${targets[@]}"; do
	[ -x "$FUZZ/tests/fuzz/$t" ] || { echo "bench/fuzz.sh: no $FUZZ/tests/fuzz/$t" >&2; exit 2; }
done

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run TARGET: one libFuzzer run into $out/TARGET.{log,corpus,artifacts}.
run() {
	local t="$1" args=()
	mkdir -p "$out/$t.corpus" "$out/$t.artifacts"
	[ -f "tests/fuzz/dict/$t.dict" ] && args+=("-dict=tests/fuzz/dict/$t.dict")
	[ -d "tests/fuzz/corpus/$t" ] && args+=("tests/fuzz/corpus/$t")
	timeout -k 30 $((secs + 300)) "$FUZZ/tests/fuzz/$t" -fork=1 -ignore_crashes=1 \
		-ignore_timeouts=1 -ignore_ooms=1 -timeout=10 -rss_limit_mb=2048 \
		-max_total_time="$secs" -artifact_prefix="$out/$t.artifacts/" \
		"$out/$t.corpus" "${args[@]}" >"$out/$t.log" 2>&1 </dev/null
	echo $? >"$out/$t.rc"
}

echo "== fuzzing ${#targets[@]} targets for ${secs}s each, $jobs at a time; output in $out"
running=0
for t in "${targets[@]}"; do
	run "$t" &
	running=$((running + 1))
	if ((running >= jobs)); then
		wait -n
		running=$((running - 1))
	fi
done
wait

count() { find "$out/$1.artifacts" -maxdepth 1 -name "$2-*" | wc -l; }
bad=0
rows=()
printf '%-18s %8s %14s %10s %8s %8s %8s %6s %5s %8s %4s\n' target seconds executions "exec/s" cov ft corpus crash leak timeout oom
for t in "${targets[@]}"; do
	log="$out/$t.log"
	# Fork mode's status lines: "#N: cov: C ft: F corp: K exec/s E
	# oom/timeout/crash: O/T/X time: Ss job: J dft_time: D".
	last=$(grep -E '^#[0-9]+: cov: ' "$log" | tail -n 1)
	execs=-; cov=-; ft=-; corp=-; eps=-; took=-
	if [[ "$last" =~ ^#([0-9]+):\ cov:\ ([0-9]+)\ ft:\ ([0-9]+)\ corp:\ ([0-9]+)\ exec/s:?\ ([0-9]+).*time:\ ([0-9]+)s ]]; then
		execs=${BASH_REMATCH[1]} cov=${BASH_REMATCH[2]} ft=${BASH_REMATCH[3]}
		corp=${BASH_REMATCH[4]} eps=${BASH_REMATCH[5]} took=${BASH_REMATCH[6]}
	fi
	# Coverage as a plain run counts it (edges and features of the final
	# corpus, comparable between runs and modes): a replay of the corpus.
	replay=$("$FUZZ/tests/fuzz/$t" -runs=0 "$out/$t.corpus" 2>&1 </dev/null |
		grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' | tail -n 1)
	if [[ "$replay" =~ cov:\ ([0-9]+)\ ft:\ ([0-9]+)\ corp:\ ([0-9]+) ]]; then
		cov=${BASH_REMATCH[1]} ft=${BASH_REMATCH[2]} corp=${BASH_REMATCH[3]}
	fi
	crash=$(count "$t" crash) leak=$(count "$t" leak) tmo=$(count "$t" timeout) oom=$(count "$t" oom)
	rc=$(cat "$out/$t.rc" 2>/dev/null || echo 1)
	((crash + leak + tmo + oom > 0 || rc != 0)) && bad=1
	printf '%-18s %8s %14s %10s %8s %8s %8s %6s %5s %8s %4s\n' "$t" "$took" "$execs" "$eps" "$cov" \
		"$ft" "$corp" "$crash" "$leak" "$tmo" "$oom"
	((rc != 0)) && echo "  $t: libFuzzer exited with status $rc (see $log)"
	rows+=("| $t | $took | $execs | $eps | $cov | $ft | $corp | $crash | $leak | $tmo | $oom |")
done
echo
echo "| target | seconds | executions | exec/s | cov | ft | corpus | crashes | leaks | timeouts | ooms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
exit $bad
