// Reads a process's CPU time from /proc/<pid>/stat, so the benchmark can report the hub's CPU per
// delivery beside the client's own ns/op.
package hubtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The kernel reports utime and stime in clock ticks of USER_HZ, which is 100 on every Linux ABI Go
// supports (sysconf(_SC_CLK_TCK) has no standard-library call): one tick is 10 ms.
const clockTick = 10 * time.Millisecond

// CPUTime is the user plus system time the process has used so far.
func CPUTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which sits in parentheses and may hold spaces: split after the
	// last ')'. utime and stime are fields 14 and 15 of the whole line, so 12 and 13 here (from 1).
	text := string(raw)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat has %d fields after the name, want at least 13", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}
