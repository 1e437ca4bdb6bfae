#!/usr/bin/env bash
# Runs every vpp test: what a newcomer and CI run.
#
#   tests/run.sh [-k PATTERN] [--no-bootstrap] [--timeout S]
#
# 1. deploy/local/bootstrap.sh: installs packages, builds build/ (release)
#    and build-asan/ (ASan+UBSan) [skipped with --no-bootstrap];
# 2. unit tests: every build-asan/tests/unit/test_* (Check);
# 3. scripts: tests/integration/test_*.{py,sh} and tests/interop/test_*.{py,sh}
#    with VPP_BUILD=build-asan, VPP_BUILD_RELEASE=build, VPP_ROOT=repo root;
# 4. fuzz smoke: every build-fuzz/tests/fuzz/fuzz_* on its seed corpus (and
#    dictionary) for 10 s, fuzz_codec for 20 s (VPP_FUZZ_TIME sets them all).
#
# -k PATTERN runs only the items whose name (e.g. unit/test_config,
# integration/test_admin.py, fuzz/fuzz_codec) matches the extended regular
# expression PATTERN. Each item prints PASS/FAIL, its counts and its time;
# a failing item shows the tail of its output. The last line is always
# `N passed, N failed` (test cases over all items); the exit status is
# non-zero when anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
pattern=""
bootstrap=1
script_timeout="${VPP_TEST_TIMEOUT:-600}"
fuzz_time="${VPP_FUZZ_TIME:-20}"
while (($#)); do
	case "$1" in
	-k) pattern="${2:?-k needs a pattern}"; shift 2 ;;
	-k*) pattern="${1#-k}"; shift ;;
	--no-bootstrap) bootstrap=0; shift ;;
	--timeout) script_timeout="${2:?--timeout needs seconds}"; shift 2 ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$1' (see --help)" >&2; echo "0 passed, 1 failed"; exit 2 ;;
	esac
done

PY=/usr/bin/python3
logs=$(mktemp -d "${TMPDIR:-/tmp}/vpp-tests.XXXXXX")
total_passed=0
total_failed=0
failed_items=()
t_start=$(date +%s)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# report NAME PASSED FAILED LOG START: prints the item's line, and the tail of
# its output when it failed.
report() {
	local name="$1" p="$2" f="$3" log="$4" t0="$5"
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
	if ((f == 0)); then
		printf 'PASS  %-44s %4d passed %9s\n' "$name" "$p" "$(elapsed "$t0")"
	else
		printf 'FAIL  %-44s %4d passed, %d failed %9s\n' "$name" "$p" "$f" "$(elapsed "$t0")"
		failed_items+=("$name")
		echo "  ---- last lines of output ($log) ----"
		tail -n 40 "$log" | sed 's/^/  | /'
		echo "  ----"
	fi
}

selected() { [ -z "$pattern" ] || [[ "$1" =~ $pattern ]]; }

if ((bootstrap)); then
	echo "== bootstrap (packages, build/, build-asan/)"
	t0=$(now)
	if deploy/local/bootstrap.sh >"$logs/bootstrap.log" 2>&1 </dev/null; then
		echo "   done in $(elapsed "$t0")"
	else
		report bootstrap 0 1 "$logs/bootstrap.log" "$t0"
		echo "$total_passed passed, $total_failed failed"
		exit 1
	fi
fi

# The build folders can be overridden (e.g. to test other build trees).
ASAN="${VPP_ASAN_DIR:-$ROOT/build-asan}"
REL="${VPP_RELEASE_DIR:-$ROOT/build}"
FUZZ="${VPP_FUZZ_DIR:-$ROOT/build-fuzz}"
# Fail loudly on sanitizer findings, even in forked Check children.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "== unit tests ($ASAN/tests/unit)"
n_unit=0
for exe in "$ASAN"/tests/unit/test_*; do
	[ -f "$exe" ] && [ -x "$exe" ] || continue
	name="unit/$(basename "$exe")"
	selected "$name" || continue
	n_unit=$((n_unit + 1))
	log="$logs/${name//\//_}.log"
	t0=$(now)
	CK_DEFAULT_TIMEOUT="${CK_DEFAULT_TIMEOUT:-120}" timeout -k 10 "$script_timeout" "$exe" \
		>"$log" 2>&1 </dev/null
	rc=$?
	summary=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
	if [[ "$summary" =~ Checks:\ ([0-9]+),\ Failures:\ ([0-9]+),\ Errors:\ ([0-9]+) ]]; then
		n=${BASH_REMATCH[1]} f=$((BASH_REMATCH[2] + BASH_REMATCH[3]))
		p=$((n - f))
		# A crash or sanitizer report after the summary still fails.
		((rc != 0 && f == 0)) && f=1
	else
		p=0 f=1
		echo "(no Check summary; exit status $rc)" >>"$log"
	fi
	report "$name" "$p" "$f" "$log" "$t0"
done
((n_unit > 0)) || [ -n "$pattern" ] || {
	echo "FAIL  no unit test executables in $ASAN/tests/unit"
	total_failed=$((total_failed + 1))
}

echo "== scripts (tests/integration, tests/interop)"
for script in tests/integration/test_* tests/interop/test_*; do
	[ -f "$script" ] || continue
	case "$script" in
	*.py) runner=("$PY") ;;
	*.sh) runner=(bash) ;;
	*) continue ;;
	esac
	name="${script#tests/}"
	selected "$name" || continue
	log="$logs/${name//\//_}.log"
	t0=$(now)
	VPP_BUILD="$ASAN" VPP_BUILD_RELEASE="$REL" VPP_ROOT="$ROOT" \
		timeout -k 10 "$script_timeout" "${runner[@]}" "$script" >"$log" 2>&1 </dev/null
	rc=$?
	last=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
	if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
		((rc != 0 && f == 0)) && f=1
	else
		p=0 f=1
	fi
	((rc == 124 || rc == 137)) && echo "(timed out after ${script_timeout}s)" >>"$log"
	((rc != 0)) && echo "(exit status $rc)" >>"$log"
	report "$name" "$p" "$f" "$log" "$t0"
done

if [ -d "$FUZZ/tests/fuzz" ]; then
	each="${VPP_FUZZ_TIME:+${fuzz_time}s each}"
	echo "== fuzz smoke ($FUZZ/tests/fuzz, ${each:-10s each, fuzz_codec ${fuzz_time}s})"
	for exe in "$FUZZ"/tests/fuzz/fuzz_*; do
		[ -f "$exe" ] && [ -x "$exe" ] || continue
		base=$(basename "$exe")
		name="fuzz/$base"
		selected "$name" || continue
		log="$logs/${name//\//_}.log"
		work="$logs/$base.corpus"
		mkdir -p "$work" "$logs/$base.artifacts"
		# New inputs go to a scratch corpus: the seed corpus in the tree
		# stays as committed.
		seeds=()
		[ -d "tests/fuzz/corpus/$base" ] && seeds=("tests/fuzz/corpus/$base")
		[ -f "tests/fuzz/dict/$base.dict" ] && seeds=("-dict=tests/fuzz/dict/$base.dict" "${seeds[@]}")
		t=$fuzz_time
		[ -z "${VPP_FUZZ_TIME:-}" ] && [ "$base" != fuzz_codec ] && t=10
		t0=$(now)
		timeout -k 10 $((t + 60)) "$exe" -max_total_time="$t" \
			-artifact_prefix="$logs/$base.artifacts/" "$work" "${seeds[@]}" \
			>"$log" 2>&1 </dev/null
		rc=$?
		if ((rc == 0)); then
			report "$name" 1 0 "$log" "$t0"
		else
			echo "(exit status $rc; crashing inputs in $logs/$base.artifacts/)" >>"$log"
			report "$name" 0 1 "$log" "$t0"
		fi
	done
fi

echo "== $(( $(date +%s) - t_start )) s in total; logs in $logs"
if ((${#failed_items[@]})); then
	echo "failed: ${failed_items[*]}"
fi
echo "$total_passed passed, $total_failed failed"
((total_failed == 0))
