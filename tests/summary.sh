#!/bin/sh
# Sum the Criterion results of every test log under the build folders given
# (the current folder if none) and print one closing line, "N passed, N
# failed"; show failing logs in full. A test program that fails outside
# its tests counts as one failure, and so does each ThreadSanitizer report
# (TEST.tsan.PID beside the test's log, from the test or a daemon it ran).
# A test skipped in this build says why on a "[WARN] skipped" line.
set -eu
[ $# -gt 0 ] || set -- .
passed=0
failed=0
for build in "$@"; do
	# With several build folders, each line says which one it is from.
	tag=
	[ $# -eq 1 ] || tag="$(basename "$build")/"
	for log in $(find "$build/tests" -name '*.log' ! -name 'test-suite.log' | sort); do
		line=$(grep -a 'Synthesis: Tested:' "$log" | tail -n 1 || true)
		if [ -z "$line" ]; then
			echo "$log: no result (crashed or did not run)"
			failed=$((failed + 1))
			continue
		fi
		echo "$tag$(basename "$log" .log): ${line#*Synthesis: }"
		grep -a '^\[WARN\] skipped' "$log" | sed 's/^\[WARN\] /  /' || true
		p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
		f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*Crashing: \([0-9]*\).*/\1 \2/p')
		passed=$((passed + p))
		for n in $f; do failed=$((failed + n)); done
		case "$f" in
		"0 0")
			# Every test passed, but the program may still have
			# failed after them (a sanitizer's report at exit): the
			# test driver's verdict says so.
			trs=${log%.log}.trs
			if [ -f "$trs" ] && grep -qE '^:test-result: (FAIL|ERROR)' "$trs"; then
				echo "---- $log: its tests passed, but the program failed after them"
				tail -n 40 "$log"
				failed=$((failed + 1))
			fi
			;;
		*) echo "---- $log"; cat "$log" ;;
		esac
	done
	for report in $(find "$build/tests" -name '*.tsan.[0-9]*' | sort); do
		echo "---- $report: a ThreadSanitizer report"
		cat "$report"
		failed=$((failed + 1))
	done
done
if [ "$passed" -eq 0 ]; then
	echo "no test ran: is Criterion installed (see configure's output)?"
	failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
