#!/bin/sh
# Sum the Criterion results of every test log under a build folder and
# print one closing line, "N passed, N failed"; show failing logs in full.
set -eu
build=${1:-.}
passed=0
failed=0
for log in $(find "$build/tests" -name '*.log' ! -name 'test-suite.log' | sort); do
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
	"0 0") ;;
	*) echo "---- $log"; cat "$log" ;;
	esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
