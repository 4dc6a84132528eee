package bio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestEmptyIsWouldBlockNotEOF(t *testing.T) {
	var b Buffer
	if _, err := b.Read(make([]byte, 4)); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("empty Read: %v, want ErrWouldBlock", err)
	}
	b.Write([]byte("abc"))
	b.CloseWrite()
	p := make([]byte, 2)
	if n, err := b.Read(p); n != 2 || err != nil || string(p) != "ab" {
		t.Fatalf("Read = %d %v %q", n, err, p)
	}
	if n, err := b.Read(p); n != 1 || err != nil || p[0] != 'c' {
		t.Fatalf("Read = %d %v", n, err)
	}
	if _, err := b.Read(p); err != io.EOF {
		t.Fatalf("closed and empty: %v, want io.EOF", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after CloseWrite: %v", err)
	}
	if !b.Closed() {
		t.Fatal("Closed() = false")
	}
}

func TestSpareCommitTake(t *testing.T) {
	var b Buffer
	b.Write([]byte("head-"))
	room := b.Spare(10)
	if len(room) < 10 {
		t.Fatalf("Spare(10) gave %d bytes", len(room))
	}
	copy(room, "tail")
	b.Commit(4)
	if got := string(b.Bytes()); got != "head-tail" {
		t.Fatalf("Bytes = %q", got)
	}
	b.Discard(5)
	if got := string(b.Take([]byte(">"))); got != ">tail" {
		t.Fatalf("Take = %q", got)
	}
	if b.Len() != 0 {
		t.Fatalf("Len after Take = %d", b.Len())
	}
	// Growing keeps the unread bytes.
	b.Write([]byte("keep"))
	b.Spare(1 << 20)
	if got := string(b.Bytes()); got != "keep" {
		t.Fatalf("after growing: %q", got)
	}
}

func TestCommitBeyondSparePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Commit beyond the spare room did not panic")
		}
	}()
	var b Buffer
	room := b.Spare(8)
	b.Commit(len(room) + 1)
}

// Large storage stays while large messages keep coming, goes when small ones follow, and Trim
// lets it go at once.
func TestLargeStorage(t *testing.T) {
	var b Buffer
	big := bytes.Repeat([]byte{1}, 1<<20)
	b.Write(big)
	b.Take(nil)
	kept := cap(b.buf)
	if kept < 1<<20 {
		t.Fatalf("a drained Buffer let its storage go after a large message (cap %d)", kept)
	}
	room := b.Spare(len(big))
	b.Commit(copy(room, big))
	b.Take(nil)
	if cap(b.buf) != kept {
		t.Fatalf("a second large message reallocated: cap %d, was %d", cap(b.buf), kept)
	}
	b.Write([]byte("small"))
	b.Take(nil)
	if cap(b.buf) != 0 {
		t.Fatalf("storage of %d bytes kept for small messages", cap(b.buf))
	}
	b.Write(big)
	b.Trim() // not empty: nothing happens
	if b.Len() != len(big) {
		t.Fatal("Trim dropped unread bytes")
	}
	b.Take(nil)
	b.Trim()
	if cap(b.buf) != 0 {
		t.Fatalf("Trim kept %d bytes", cap(b.buf))
	}
}

// Small storage comes from the shared pool and goes back when drained: an idle Buffer holds
// nothing, and a busy one allocates nothing.
func TestPooledStorage(t *testing.T) {
	var b Buffer
	room := b.Spare(100)
	if cap(room)+b.Len() != poolCap {
		t.Fatalf("Spare(100) gave %d bytes of room, want pooled storage of %d", cap(room), poolCap)
	}
	b.Commit(copy(room, "abc"))
	b.Take(nil)
	if b.buf != nil {
		t.Fatal("a drained Buffer kept its pooled storage")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		room := b.Spare(1000)
		b.Commit(len(room[:1000]))
		b.Discard(1000)
	})
	if allocs > 0.1 {
		t.Fatalf("%.2f allocations per message", allocs)
	}
}

func ExampleBuffer() {
	var b Buffer
	p := make([]byte, 16)
	_, err := b.Read(p)
	fmt.Println(err)
	b.Write([]byte("record"))
	n, _ := b.Read(p)
	fmt.Println(string(p[:n]))
	b.CloseWrite()
	_, err = b.Read(p)
	fmt.Println(err)
	// Output:
	// bio: would block: no data buffered yet
	// record
	// EOF
}

// Large storage comes from the pool of its size class: a steady stream of 1 MiB messages
// allocates nothing, and a drained Buffer still holds nothing.
func TestPooledLargeStorage(t *testing.T) {
	var b Buffer
	msg := make([]byte, 1<<20)
	allocs := testing.AllocsPerRun(200, func() {
		room := b.Spare(len(msg))
		b.Commit(copy(room, msg))
		b.Discard(len(msg))
	})
	if allocs > 0.1 {
		t.Fatalf("%.2f allocations per 1 MiB message", allocs)
	}
	if b.buf != nil {
		t.Fatal("a drained Buffer kept its pooled storage")
	}
	// Growth moves the unread bytes into the next size class and keeps them.
	b.Write([]byte("head"))
	room := b.Spare(300 << 10)
	if cap(room)+b.Len() != poolCap<<4 || string(b.Bytes()) != "head" {
		t.Fatalf("grew to %d bytes holding %q, want %d holding \"head\"", cap(room)+b.Len(), b.Bytes(), poolCap<<4)
	}
	// Beyond the largest class the storage is the Buffer's own and goes when drained.
	b.Release()
	room = b.Spare(maxPooled + 1)
	if b.pooled != nil || cap(room) < maxPooled+1 {
		t.Fatalf("storage of %d bytes, pooled %v", cap(room), b.pooled != nil)
	}
	b.Commit(1)
	b.Take(nil)
	if b.buf != nil {
		t.Fatal("a drained Buffer kept storage beyond the pools")
	}
}
