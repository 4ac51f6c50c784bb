// The server of `sse-apps bench roundtrip --targets go`, written as the Go original's
// bidirectional server is: the standard library only, a map of connected clients under a mutex,
// each client a channel of frames its stream writes out with http.Flusher, and a channel of the
// answers it posts back.
//
//   - GET /events?client_id=X: the stream. First frame data: {"id":"X","type":"client_id"}, then
//     one data: {"id":"<n>","message":"M","method":"analyze"} per request. A second stream with
//     the same name takes the name over, as in the original.
//   - GET or POST /trigger?client_id=X&message=M: sends X a request and waits up to -timeout for
//     its answer; 200 {"id":"<n>","result":...}, 400 without the parameters, 404 for a client not
//     connected, 408 when no answer came in time.
//   - POST /response with Client-ID: X and {"id":"<n>","result":...}: an empty 200, the answer
//     handed to X's waiting trigger; 400 for a bad body or no Client-ID, 404 for an unknown client.
//
// As in the original, an answer goes to whichever trigger of that client waits next (the answer's
// id is not checked); the bench calls each client one trigger at a time, so each answer meets its
// own trigger. What the bench reads of this server (its CPU, its accepted connections) is in
// control.go.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A connected client: frames for its stream, answers from its POSTs.
type client struct {
	frames  chan []byte
	answers chan answer
}

// A request as it goes down the stream.
type request struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	Method  string `json:"method"`
}

// An answer as the client posts it and /trigger returns it.
type answer struct {
	ID     string      `json:"id"`
	Result interface{} `json:"result"`
}

type server struct {
	mu      sync.Mutex
	clients map[string]*client
	nextID  int64
	timeout time.Duration
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	timeout := flag.Duration("timeout", 30*time.Second, "how long /trigger waits for an answer")
	flag.Parse()

	s := &server{clients: make(map[string]*client), timeout: *timeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/events", s.events)
	mux.HandleFunc("/trigger", s.trigger)
	mux.HandleFunc("/response", s.response)
	mux.HandleFunc("/metrics", metrics)

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The bench reads the address from this line (the port may be 0: any free one).
	fmt.Printf("go original listening on http://%s\n", listener.Addr())
	serveControl()
	httpServer := &http.Server{Handler: mux, ConnState: countAccepted}
	if err := httpServer.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	name := r.URL.Query().Get("client_id")
	if name == "" {
		name = "client_" + strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	c := &client{frames: make(chan []byte, 16), answers: make(chan answer, 1)}
	s.mu.Lock()
	s.clients[name] = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.clients[name] == c {
			delete(s.clients, name)
		}
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	hello, _ := json.Marshal(map[string]string{"type": "client_id", "id": name})
	fmt.Fprintf(w, "data: %s\n\n", hello)
	flusher.Flush()
	for {
		select {
		case frame := <-c.frames:
			fmt.Fprintf(w, "data: %s\n\n", frame)
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (s *server) client(name string) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[name]
}

func (s *server) trigger(w http.ResponseWriter, r *http.Request) {
	name, message := r.URL.Query().Get("client_id"), r.URL.Query().Get("message")
	if name == "" || message == "" {
		http.Error(w, "need client_id and message", http.StatusBadRequest)
		return
	}
	c := s.client(name)
	if c == nil {
		http.Error(w, "client not connected", http.StatusNotFound)
		return
	}
	id := strconv.FormatInt(atomic.AddInt64(&s.nextID, 1), 10)
	frame, _ := json.Marshal(request{ID: id, Message: message, Method: "analyze"})
	deadline := time.NewTimer(s.timeout)
	defer deadline.Stop()
	select {
	case c.frames <- frame:
	case <-deadline.C:
		http.Error(w, "timeout waiting for the client", http.StatusRequestTimeout)
		return
	}
	select {
	case a := <-c.answers:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a)
	case <-deadline.C:
		http.Error(w, "timeout waiting for the client", http.StatusRequestTimeout)
	}
}

func (s *server) response(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	name := r.Header.Get("Client-ID")
	if name == "" {
		http.Error(w, "need the Client-ID header", http.StatusBadRequest)
		return
	}
	var a answer
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
		http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
		return
	}
	c := s.client(name)
	if c == nil {
		http.Error(w, "client not connected", http.StatusNotFound)
		return
	}
	// Nobody waiting and one answer already waiting: this one is dropped, as nobody asked.
	select {
	case c.answers <- a:
	default:
	}
	w.WriteHeader(http.StatusOK)
}
