package tlszmq

import (
	"context"
	"errors"
	"fmt"

	"github.com/tlszmq/tlszmq/bio"
)

// A worker runs the TLS engines of the sessions it was given, and nothing else touches them:
// it feeds them the frames the socket owner (Serve's goroutine) passes on, runs the handler on
// the messages they complete (on its own goroutine while the handler is quick, see
// worker_inline.go; on the session's own goroutine once it has been slow), encrypts the
// replies, and passes what goes out to the socket owner as events.
type worker struct {
	s        *Server
	id       int
	jobs     *mailbox[job]
	sessions int    // sessions given to it and not yet removed (the socket owner's count)
	scratch  []byte // the encoding of one reply, reused
	done     chan struct{}
	batch    []job // the jobs taken: batch[pos:] are still to do, by whoever is the worker
	pos      int
	lending  lending
}

// jobKind says what a job asks of a worker.
type jobKind uint8

const (
	jobFrame   jobKind = iota // feed a frame to the session's engine
	jobResult                 // the handler's result for one message
	jobReply                  // Server.Reply
	jobEnd                    // the socket owner has removed the session
	jobRelease                // the session has gone quiet: let its buffers go
	jobQuit                   // the server is stopping: the jobs before this one are the last
)

// job is one thing for a worker to do, for one session.
type job struct {
	kind    jobKind
	sess    *session
	payload []byte   // jobFrame
	fresh   bool     // jobFrame: the frame that made the session
	reply   [][]byte // jobResult, jobReply
	err     error    // jobResult: the handler's error
	slow    bool     // jobResult: the handler outlasted handlerInline
	notify  bool     // jobEnd: send close_notify first, where the session is established
	done    chan<- error
}

// eventKind says what a worker tells the socket owner.
type eventKind uint8

const (
	eventSend        eventKind = iota // send payload on the session's route
	eventEstablished                  // the handshake is done
	eventEnded                        // the engine is closed; nothing more comes from it
)

// event is one thing a worker tells the socket owner about a session, in the session's order.
type event struct {
	kind    eventKind
	sess    *session
	payload []byte // eventSend: the engine's output, detached (nil: an empty answer)
	last    bool   // eventSend: the session's last message
	err     error  // eventEnded: why, when the worker ended it (nil when the owner did)
	failed  bool   // eventEnded: during the handshake
}

// loop does the worker's jobs, in order, until the quit job. The goroutine running it is the
// worker; it may lend itself to a handler that then outlasts handlerInline, and a new
// goroutine carries on with the jobs (see call).
func (w *worker) loop() {
	for {
		for w.pos < len(w.batch) {
			j := w.batch[w.pos]
			w.batch[w.pos] = job{}
			w.pos++
			if j.kind == jobQuit {
				w.quit()
				return
			}
			if !w.do(j) {
				return // another goroutine is the worker now
			}
		}
		w.batch, w.pos = w.batch[:0], 0
		<-w.jobs.signal
		w.batch = w.jobs.take(w.batch)
	}
}

// quit refuses the jobs left and ends the worker.
func (w *worker) quit() {
	for _, j := range append(w.batch[w.pos:], w.jobs.close()...) {
		w.refuse(j)
	}
	w.batch, w.pos = nil, 0
	close(w.done)
}

// refuse answers a job that comes after the worker stopped.
func (w *worker) refuse(j job) {
	if j.done != nil {
		j.done <- &OpError{Op: "reply to", Endpoint: j.sess.peer.String(), Err: errServerClosed}
	}
}

// post passes an event to the socket owner, waking it if it is asleep in its poll. An owner
// that is not polling finds the event before it polls again (see Server.Serve).
func (w *worker) post(ev event) {
	if first, _ := w.s.events.put(ev); first {
		w.s.waiter.Wake()
	}
}

// give hands a job to the worker; false once it has stopped.
func (w *worker) give(j job) bool {
	_, ok := w.jobs.put(j)
	return ok
}

// do does one job; it reports false if the goroutine lent itself to a handler meanwhile and
// is no longer the worker.
func (w *worker) do(j job) bool {
	sess := j.sess
	if sess.w != w {
		panic("tlszmq: a session's job reached another worker") // never: sessions do not move
	}
	switch j.kind {
	case jobFrame:
		w.s.queuedFrames.Add(-1)
		w.s.queuedBytes.Add(-int64(len(j.payload)))
		if sess.ended || sess.dead.Load() {
			// Removed by the socket owner meanwhile (a flood of half-open sessions makes
			// room this way): no TLS work for it. Its end job follows.
			return true
		}
		if sess.inflight > 0 || sess.closing || len(sess.frames) > 0 {
			// Its messages are with the handler: the frame waits, undecrypted, within
			// MaxMessageSize, until the handler is done.
			sess.frames = append(sess.frames, j.payload)
			if sess.held += len(j.payload); sess.held > w.s.maxFrame {
				w.fail(sess, overBudget("MaxMessageSize", "more than %d bytes of frames waiting for the handler", w.s.maxFrame))
			}
			return true
		}
		w.feed(sess, j.payload, j.fresh)
		return w.advance(sess)
	case jobResult:
		sess.inflight--
		sess.slow = sess.slow || j.slow
		if sess.ended {
			return true
		}
		w.result(sess, j.reply, j.err)
		return w.advance(sess)
	case jobReply:
		err := w.reply(sess, j.reply)
		j.done <- err
		if err == nil {
			return w.advance(sess)
		}
	case jobEnd:
		if sess.ended {
			return true
		}
		if j.notify && sess.e != nil && sess.e.HandshakeComplete() && sess.e.Err() == nil && sess.e.Shutdown() == nil {
			w.flush(sess, true)
		}
		w.finish(sess, nil)
	case jobRelease:
		if !sess.ended && sess.e != nil {
			sess.e.ReleaseBuffers()
		}
	}
	return true
}

// feed runs a session's engine on one frame and puts the messages it completes in the inbox.
func (w *worker) feed(sess *session, payload []byte, fresh bool) {
	if sess.e == nil {
		if !w.start(sess) {
			return
		}
	}
	sess.owed = true
	var err error
	wasDone := sess.e.HandshakeComplete()
	if wasDone {
		err = sess.codec.put(sess.e, payload) // the frame is ours: it may be decrypted where it lies
	} else {
		err = sess.e.PutData(payload)
	}
	if err != nil && !wasDone && !fresh && isClientHello(payload) {
		// A client that restarted mid-handshake: start over with this ClientHello, on a
		// new engine, in the same place in the table.
		w.s.log.Info("tlszmq: handshake restarted", "server", w.s.endpoint, "peer", sess.peer.String(),
			"reason", "a new ClientHello during the handshake: the client started over")
		sess.e.Close()
		sess.e = nil
		if !w.start(sess) {
			return
		}
		err = sess.e.PutData(payload)
	}
	if err != nil {
		w.fail(sess, err)
		return
	}
	if !wasDone && sess.e.HandshakeComplete() {
		w.established(sess)
	}
	if err := w.receive(sess); err != nil {
		w.fail(sess, err)
		return
	}
	if sess.e.PeerClosed() {
		sess.closing = true // the last messages are answered before the close_notify
	}
}

// start gives a session its engine; it reports false, the session ended, if there is none.
func (w *worker) start(sess *session) bool {
	e, err := NewEngine(w.s.ctx, EngineOptions{NextProtos: framedProtos})
	if err != nil {
		w.finish(sess, fmt.Errorf("no session: %w", err))
		return false
	}
	sess.e = e
	sess.codec = rawCodec{}
	sess.deframer = deframer{max: w.s.opts.MaxMessageSize, maxParts: w.s.opts.MaxParts, maxMsgs: w.s.opts.MaxMessagesPerFrame}
	return true
}

// established records what the handshake settled, for the handler, and tells the owner.
func (w *worker) established(sess *session) {
	st := sess.e.ConnectionState()
	sess.codec = codecFor(st.NegotiatedProtocol, &sess.deframer)
	sess.peer.Certificates = st.PeerCertificates
	sess.peer.Verified = st.Verified
	sess.peer.Version = st.Version
	sess.peer.CipherSuite = st.CipherSuite
	sess.peer.DidResume = st.DidResume
	w.s.stats.handshakesDone.Add(1)
	w.post(event{kind: eventEstablished, sess: sess})
}

// receive moves the messages a frame completed into the session's inbox: at most
// MaxMessagesPerFrame of them, in the framed protocol (the deframer counts).
func (w *worker) receive(sess *session) error {
	inbox, err := sess.codec.take(sess.e, sess.inbox)
	if err != nil {
		return err
	}
	sess.inbox = inbox
	return nil
}

// advance moves a session on as far as it can: it gives the handler the messages waiting,
// and once the handler is done and no request is deferred, sends the replies in one frame and
// feeds the next frame that waited. It reports false if the goroutine lent itself to a
// handler meanwhile and is no longer the worker.
func (w *worker) advance(sess *session) bool {
	for !sess.ended && sess.inflight == 0 {
		if len(sess.inbox) > 0 {
			msgs := sess.inbox
			sess.inbox = nil
			sess.inflight = len(msgs)
			if sess.ctx == nil {
				sess.ctx, sess.stop = context.WithCancel(w.s.serveCtx)
			}
			if sess.slow {
				go w.s.handle(sess, msgs) // it has been slow before: not on the worker
				return true
			}
			if !w.handleInline(sess, msgs) {
				return false
			}
			continue
		}
		if sess.closing {
			sess.e.Shutdown()
			w.flush(sess, true)
			w.finish(sess, errCloseNotify)
			return true
		}
		if sess.deferred <= 0 && sess.owed {
			sess.deferred = 0
			w.flush(sess, false)
		}
		if len(sess.frames) == 0 {
			return true
		}
		frame := sess.frames[0]
		sess.frames[0] = nil
		sess.frames = sess.frames[1:]
		sess.held -= len(frame)
		w.feed(sess, frame, false)
	}
	return true
}

// errCloseNotify is the reason a session ends when its peer closes it.
var errCloseNotify = errors.New("close_notify received")

// result writes the handler's answer to one message.
func (w *worker) result(sess *session, reply [][]byte, err error) {
	switch {
	case errors.Is(err, ErrDeferred):
		sess.deferred++
	case err != nil:
		w.s.log.Warn("tlszmq: handler failed", "server", w.s.endpoint, "peer", sess.peer.String(), "reason", err)
	default:
		if err := w.write(sess, reply); err != nil {
			w.fail(sess, err)
			return
		}
		if err := w.checkHeld(sess); err != nil {
			w.fail(sess, err)
		}
	}
}

// reply writes the answer to a deferred request (Server.Reply). A Reply may come before the
// handler that deferred the request has returned: it is counted then, not refused.
func (w *worker) reply(sess *session, reply [][]byte) error {
	if sess.ended || sess.deferred+sess.inflight <= 0 { // at most one early Reply a message in flight
		return &OpError{Op: "reply to", Endpoint: sess.peer.String(), Err: errors.New("no deferred request of a live session")}
	}
	sess.deferred--
	if err := w.write(sess, reply); err != nil {
		w.fail(sess, err)
		return err
	}
	if err := w.checkHeld(sess); err != nil {
		w.fail(sess, err)
		return err
	}
	return nil
}

// checkHeld bounds the replies a session holds back while a deferred request waits (they go
// out with its answer, in one frame): MaxPendingOutput beyond the largest message.
func (w *worker) checkHeld(sess *session) error {
	if limit := w.s.opts.MaxPendingOutput + w.s.maxFrame; sess.deferred > 0 && sess.e.State().Pending > limit {
		return overBudget("MaxPendingOutput", "more than %d bytes of replies held back behind a deferred request", limit)
	}
	return nil
}

// write encrypts one reply into the session's output.
func (w *worker) write(sess *session, reply [][]byte) error {
	if reply == nil {
		return nil
	}
	var sent bool
	var err error
	if w.scratch, sent, err = sess.codec.write(sess.e, w.scratch, reply); sent {
		w.s.stats.messagesOut.Add(1) // the raw format sends nothing for an empty message
		sess.msgsOut.Add(1)
	}
	return err
}

// flush passes what the engine has for the network to the socket owner, to go out as one
// message (possibly empty, so that a lock-step peer gets its answer). last says the session
// ends after it: the message goes if it can, and a failure to send it changes nothing.
func (w *worker) flush(sess *session, last bool) {
	sess.owed = false
	out := sess.e.TakeData()
	w.s.stats.bytesOut.Add(int64(len(out)))
	sess.bytesOut.Add(int64(len(out)))
	w.post(event{kind: eventSend, sess: sess, payload: out, last: last})
}

// fail ends a session after an error: the TLS bytes it owes the peer (an alert) go out first,
// and a peer that went past a budget of the server's gets close_notify.
func (w *worker) fail(sess *session, err error) {
	if errors.Is(err, errBudget) && sess.e.HandshakeComplete() && sess.e.Err() == nil {
		sess.e.Shutdown()
	}
	w.flush(sess, true)
	w.finish(sess, err)
}

// finish closes the session's engine, cancels its handler's context and tells the owner.
// Frames and results that come for it later are dropped.
func (w *worker) finish(sess *session, err error) {
	sess.ended = true
	// A session Config.VerifyConnection refused finished its handshake in OpenSSL's terms,
	// never in the server's: it failed.
	failed := sess.e == nil || !sess.e.HandshakeComplete() || refusedByHook(err)
	if sess.e != nil {
		sess.e.Close()
	}
	if sess.stop != nil {
		sess.stop()
	}
	sess.inbox, sess.frames, sess.held = nil, nil, 0
	w.post(event{kind: eventEnded, sess: sess, err: err, failed: failed})
}

// handle runs the handler on a session's messages, in order, on a goroutine of its own, and
// passes each result back to the session's worker.
func (s *Server) handle(sess *session, msgs [][][]byte) {
	for i, msg := range msgs {
		msgs[i] = nil
		if err := sess.ctx.Err(); err != nil {
			// The session has ended (or the server stopped): its other messages are not
			// handled, and their results only keep the count.
			sess.w.give(job{kind: jobResult, sess: sess, err: err})
			continue
		}
		reply, err := s.callHandler(sess, msg)
		sess.w.give(job{kind: jobResult, sess: sess, reply: reply, err: err})
	}
}

// callHandler runs the handler on one message, with the session's context.
func (s *Server) callHandler(sess *session, msg [][]byte) ([][]byte, error) {
	s.stats.messagesIn.Add(1)
	sess.msgsIn.Add(1)
	ctx := sess.ctx
	if s.opts.HandlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.HandlerTimeout)
		defer cancel()
	}
	return s.handler(ctx, &sess.peer, msg)
}

// recycle gives an event's detached engine output back to the pools.
func recycle(ev *event) {
	if ev.payload != nil {
		bio.Recycle(ev.payload)
		ev.payload = nil
	}
}
