// Package bio holds the Go side of tlszmq's memory-BIO pair: the byte queues an engine keeps
// beside OpenSSL's memory BIOs.
//
// The engine keeps three of them per TLS endpoint: the ciphertext drained from OpenSSL's write
// BIO and waiting to leave as a ZeroMQ message, the plaintext that SSL_read produced and that
// the application has not read yet, and application data written before the handshake
// finished. The C side writes straight into a Buffer's spare room ([Buffer.Spare] and
// [Buffer.Commit]), so bytes are copied once on their way from OpenSSL to Go, and a Buffer's
// bytes can leave without a copy at all ([Buffer.Detach]).
//
// An OpenSSL memory BIO that is empty can mean two things: "nothing yet, try again later" or
// "the end of the stream". tlszmq always means the first (BIO_set_mem_eof_return(bio, -1)), and
// marks the second explicitly: the engine's Read returns [ErrWouldBlock] when it has nothing
// yet, and io.EOF only after the peer's close_notify.
//
// A Buffer is not safe for concurrent use.
package bio

import (
	"errors"
	"sync"
)

// ErrWouldBlock is the memory BIO's "retry": no data yet, more may come. It is never the end
// of the stream.
var ErrWouldBlock = errors.New("bio: would block: no data buffered yet")

// shrinkAbove is the capacity above which an emptied Buffer may let its storage go, so that an
// endpoint does not keep the memory of one large message: it does when the bytes it held since
// it was last emptied filled less than a quarter of that storage. A steady stream of large
// messages keeps its storage and allocates nothing.
const shrinkAbove = 64 << 10

// poolCap is the size of the smallest storage Buffers borrow from pools shared by all of them,
// and give back as soon as they are drained: an idle endpoint holds no storage, and the steady
// state of messages of any size up to maxPooled allocates nothing. Each pool holds one size,
// four times the one before: 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB, 64 MiB. Storage beyond
// that is allocated for the one Buffer and dropped when it empties.
const (
	poolCap   = 64 << 10
	poolCount = 6
	maxPooled = poolCap << (2 * (poolCount - 1))
)

var pools [poolCount]sync.Pool

func init() {
	for i := range pools {
		size := poolCap << (2 * i)
		pools[i].New = func() any { b := make([]byte, 0, size); return &b }
	}
}

// poolFor returns the index of the smallest pool whose storage holds n bytes, or -1.
func poolFor(n int) int {
	for i := range poolCount {
		if n <= poolCap<<(2*i) {
			return i
		}
	}
	return -1
}

// putStorage gives pooled storage back to the pool of its size.
func putStorage(p *[]byte) {
	if i := poolFor(cap(*p)); i >= 0 && cap(*p) == poolCap<<(2*i) {
		pools[i].Put(p)
	}
}

// Buffer is a FIFO byte queue with memory-BIO semantics. The zero value is an empty, open
// Buffer ready to use.
type Buffer struct {
	buf    []byte // unread bytes are buf[off:]
	off    int
	peak   int     // the most unread bytes since the Buffer was last emptied
	pooled *[]byte // the pool's handle on buf's storage, when it came from the pool
}

// Len returns the number of unread bytes.
func (b *Buffer) Len() int { return len(b.buf) - b.off }

// Bytes returns the unread bytes without consuming them. The slice is valid until the next
// call that modifies the Buffer.
func (b *Buffer) Bytes() []byte { return b.buf[b.off:] }

// Write appends a copy of p. It never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	b.peak = max(b.peak, b.Len())
	return len(p), nil
}

// Spare returns at least n bytes of free room after the unread bytes, growing the Buffer if
// needed. Bytes put there become part of the Buffer only through Commit.
func (b *Buffer) Spare(n int) []byte {
	if b.off > 0 && b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	if cap(b.buf)-len(b.buf) < n {
		unread := len(b.buf) - b.off
		need := unread + n
		if b.buf != nil {
			need = max(need, 2*cap(b.buf))
		}
		var grown []byte
		var pooled *[]byte
		if i := poolFor(need); i >= 0 {
			pooled = pools[i].Get().(*[]byte)
			grown = (*pooled)[:unread]
		} else {
			grown = make([]byte, unread, need)
		}
		copy(grown, b.buf[b.off:])
		if b.pooled != nil {
			putStorage(b.pooled)
		}
		b.buf, b.off, b.pooled = grown, 0, pooled
	}
	return b.buf[len(b.buf):cap(b.buf)]
}

// Commit adds n bytes, written into the room that Spare returned, to the unread bytes.
func (b *Buffer) Commit(n int) {
	if n < 0 || len(b.buf)+n > cap(b.buf) {
		panic("bio: Commit beyond the room Spare returned")
	}
	b.buf = b.buf[:len(b.buf)+n]
	b.peak = max(b.peak, b.Len())
}

// Take appends every unread byte to dst and empties the Buffer.
func (b *Buffer) Take(dst []byte) []byte {
	dst = append(dst, b.buf[b.off:]...)
	b.off = len(b.buf)
	b.compact()
	return dst
}

// Discard drops the first n unread bytes (all of them if n is larger).
func (b *Buffer) Discard(n int) {
	b.off += min(n, b.Len())
	b.compact()
}

// Detach empties the Buffer and returns its unread bytes without copying them (nil if there
// are none): their storage goes with them, and the Buffer takes new storage when it next
// grows. Once done with the bytes, give them to Recycle, so that pooled storage is reused.
func (b *Buffer) Detach() []byte {
	if b.Len() == 0 {
		return nil
	}
	p := b.buf[b.off:]
	b.buf, b.off, b.peak, b.pooled = nil, 0, 0, nil
	return p
}

// Recycle gives storage that Detach returned back to the shared pool of its size; storage of
// another size is left to the garbage collector. p must not be used afterwards.
func Recycle(p []byte) {
	if i := poolFor(cap(p)); i >= 0 && cap(p) == poolCap<<(2*i) {
		p = p[:0]
		pools[i].Put(&p)
	}
}

// Release empties the Buffer and lets its storage go (back to the shared pool where it came
// from there).
func (b *Buffer) Release() {
	if b.pooled != nil {
		putStorage(b.pooled)
		b.pooled = nil
	}
	b.buf, b.off, b.peak = nil, 0, 0
}

// Trim lets the storage of an empty Buffer go if it came from the pool or is larger than a
// small message needs; an idle endpoint calls it to keep its memory small. It does nothing to
// a Buffer with unread bytes.
func (b *Buffer) Trim() {
	if b.Len() == 0 && (b.pooled != nil || cap(b.buf) > shrinkAbove) {
		b.Release()
	}
}

// compact resets an emptied Buffer: pooled storage goes back to the pool, large storage goes
// when it was mostly unused.
func (b *Buffer) compact() {
	if b.off < len(b.buf) {
		return
	}
	switch {
	case b.pooled != nil, cap(b.buf) > shrinkAbove && b.peak < cap(b.buf)/4:
		b.Release()
	default:
		b.buf = b.buf[:0]
	}
	b.off, b.peak = 0, 0
}
