// The responder of `sse-apps bench roundtrip --targets go`, written as the Go original's
// bidirectional client is: each session reads its SSE stream line by line with bufio and answers
// every request with http.Client.Do on POST /response, closing the answer's body unread. Each
// session has a client of its own, as each of the original's client processes had.
//
// It prints "connected K of N" once every session has either read its greeting or failed to
// connect, then answers until it is killed.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
)

type request struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Method  string `json:"method"`
	Message string `json:"message"`
}

type answer struct {
	ID     string `json:"id"`
	Result string `json:"result"`
}

func main() {
	server := flag.String("server", "http://127.0.0.1:8082", "the server")
	sessions := flag.Int("sessions", 1, "sessions, each a client of its own")
	prefix := flag.String("prefix", "go", "session names are <prefix>-<i>")
	keepAlive := flag.Bool("keepalive", true, "reuse connections (false: one per request)")
	flag.Parse()

	connected := make(chan bool)
	for i := 0; i < *sessions; i++ {
		go session(*server, fmt.Sprintf("%s-%d", *prefix, i), *keepAlive, connected)
	}
	ok := 0
	for i := 0; i < *sessions; i++ {
		if <-connected {
			ok++
		}
	}
	fmt.Printf("connected %d of %d\n", ok, *sessions)
	select {}
}

func session(server, name string, keepAlive bool, connected chan<- bool) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
	resp, err := client.Get(server + "/events?client_id=" + name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		connected <- false
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "%s: the stream answered %s\n", name, resp.Status)
		connected <- false
		return
	}
	greeted := false
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var req request
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &req); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			continue
		}
		if req.Type == "client_id" {
			if !greeted {
				greeted = true
				connected <- true
			}
			continue
		}
		respond(client, server, name, req)
	}
	if !greeted {
		connected <- false
	}
	fmt.Fprintf(os.Stderr, "%s: the stream ended: %v\n", name, scanner.Err())
}

func respond(client *http.Client, server, name string, req request) {
	body, _ := json.Marshal(answer{ID: req.ID, Result: "analyzed: " + req.Message})
	post, err := http.NewRequest("POST", server+"/response", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return
	}
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set("Client-ID", name)
	resp, err := client.Do(post)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return
	}
	// Closed unread, as the original does: the connection is reused only if nothing was left.
	resp.Body.Close()
}
