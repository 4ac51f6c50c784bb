// What `sse-apps bench` reads of the Go server, the same two things it reads of ours, measured the
// same way (none of this is on the round trip's path):
//
//   - its CPU time and memory: with SSE_APPS_BENCH_CONTROL set, every "usage" line on stdin is
//     answered on stdout with "usage <user µs> <system µs> <resident KiB> <open descriptors>",
//     from getrusage and /proc/self, as our servers answer it;
//   - the TCP connections it accepted: a ConnState hook counts every new one, served on
//     GET /metrics as "sse_connections_accepted_total N", the series ours serves.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var accepted int64

// countAccepted is the server's ConnState hook: StateNew is reported once per accepted connection.
func countAccepted(_ net.Conn, state http.ConnState) {
	if state == http.StateNew {
		atomic.AddInt64(&accepted, 1)
	}
}

func metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "sse_connections_accepted_total %d\n", atomic.LoadInt64(&accepted))
}

// serveControl answers the bench's "usage" lines, when the bench started this server.
func serveControl() {
	if os.Getenv("SSE_APPS_BENCH_CONTROL") == "" {
		return
	}
	go func() {
		lines := bufio.NewScanner(os.Stdin)
		for lines.Scan() {
			if strings.TrimSpace(lines.Text()) == "usage" {
				fmt.Println(usage())
			}
		}
	}()
}

func usage() string {
	var self syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	micros := func(t syscall.Timeval) int64 { return int64(t.Sec)*1000000 + int64(t.Usec) }
	return fmt.Sprintf("usage %d %d %d %d",
		micros(self.Utime), micros(self.Stime), residentKiB(), openDescriptors())
}

// residentKiB is the second field of /proc/self/statm (pages), in KiB; 0 where it cannot be read.
func residentKiB() int64 {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize()) / 1024
}

// openDescriptors counts /proc/self/fd, less the one reading it.
func openDescriptors() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil || len(entries) == 0 {
		return 0
	}
	return len(entries) - 1
}
