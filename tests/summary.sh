#!/bin/sh
# Sum the Criterion results of every test log under one or more build
# folders (the current one by default) and print one closing line,
# "N passed, N failed"; show failing logs in full. A test program that
# fails outside its tests counts as one failure.
set -eu
[ $# -gt 0 ] || set -- .
passed=0
failed=0
for log in $(for build in "$@"; do find "$build/tests" -name '*.log' ! -name 'test-suite.log'; done | sort); do
	line=$(grep -a 'Synthesis: Tested:' "$log" | tail -n 1 || true)
	if [ -z "$line" ]; then
		echo "$log: no result (crashed or did not run)"
		failed=$((failed + 1))
		continue
	fi
	echo "$(basename "$log" .log): ${line#*Synthesis: }"
	p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*Crashing: \([0-9]*\).*/\1 \2/p')
	passed=$((passed + p))
	for n in $f; do failed=$((failed + n)); done
	case "$f" in
	"0 0")
		# Every test passed, but the program may still have failed
		# after them (a sanitizer's report at exit): the test
		# driver's verdict says so.
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
if [ "$passed" -eq 0 ]; then
	echo "no test ran: is Criterion installed (see configure's output)?"
	failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
