package bio

import (
	"bytes"
	"fmt"
	"testing"
)

// Detach hands the unread bytes over without a copy and leaves the Buffer empty; Recycle takes
// pooled storage back, which the next Buffer reuses.
func TestDetachRecycle(t *testing.T) {
	var b Buffer
	if b.Detach() != nil {
		t.Fatal("an empty Buffer detached something")
	}
	room := b.Spare(10)
	b.Commit(copy(room, "abc"))
	p := b.Detach()
	if string(p) != "abc" || b.Len() != 0 || b.buf != nil {
		t.Fatalf("Detach = %q, the Buffer holds %d bytes and storage %v", p, b.Len(), b.buf != nil)
	}
	if cap(p) != poolCap {
		t.Fatalf("detached storage of %d bytes, want the pool's %d", cap(p), poolCap)
	}
	Recycle(p)
	b.Write([]byte("next"))
	if string(b.Bytes()) != "next" {
		t.Fatalf("after Recycle: %q", b.Bytes())
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
	room := b.Spare(16) // where the C side writes, without a copy in between
	n := copy(room, "record")
	b.Commit(n)
	fmt.Println(b.Len(), string(b.Bytes()))
	out := b.Take(nil)
	fmt.Println(string(out), b.Len())
	// Output:
	// 6 record
	// record 0
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
