// The load generator of `sse-apps bench roundtrip --targets go`: N goroutines, one per session,
// each calling GET /trigger for its session as soon as the last call was answered, for a fixed
// time, on one net/http client that keeps up to N idle connections. It prints
// "count C errors E elapsed_us T p50_us P p99_us Q p999_us R max_us M".
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8082", "the server")
	sessions := flag.Int("sessions", 1, "concurrent callers, one per session")
	prefix := flag.String("prefix", "go", "session names are <prefix>-<i>")
	duration := flag.Duration("duration", 5*time.Second, "how long to call")
	keepAlive := flag.Bool("keepalive", true, "reuse connections (false: one per request)")
	flag.Parse()

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *sessions,
		DisableKeepAlives:   !*keepAlive,
	}}
	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	var wg sync.WaitGroup
	started := time.Now()
	deadline := started.Add(*duration)
	for i := 0; i < *sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var mine []time.Duration
			failed := 0
			for n := 0; time.Now().Before(deadline); n++ {
				url := fmt.Sprintf("%s/trigger?client_id=%s-%d&message=m%d", *server, *prefix, i, n)
				sent := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					fmt.Fprintf(os.Stderr, "trigger failed: %v\n", err)
					failed++
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fmt.Fprintf(os.Stderr, "trigger answered %s: %s\n", resp.Status, body)
					failed++
					continue
				}
				mine = append(mine, time.Since(sent))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += failed
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(started)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	fmt.Printf("count %d errors %d elapsed_us %d p50_us %d p99_us %d p999_us %d max_us %d\n",
		len(latencies), errors, elapsed.Microseconds(), percentile(latencies, 0.50),
		percentile(latencies, 0.99), percentile(latencies, 0.999), percentile(latencies, 1))
}

// The nearest-rank percentile, in microseconds; 0 for no latencies.
func percentile(sorted []time.Duration, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	return sorted[rank].Microseconds()
}
