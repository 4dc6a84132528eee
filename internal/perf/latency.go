package perf

import (
	"math"
	"math/bits"
	"time"
)

// latencyBuckets is the size of a latencies histogram: durations below 128 ns exactly, then
// 64 buckets for each power of two up to 2^63 ns.
const latencyBuckets = 57*64 + 128

// latencies is a histogram of durations, made once and filled without allocating: each
// power of two of nanoseconds is cut into 64 equal buckets, so that a percentile read from it
// is within 1/128 of the duration it stands for.
type latencies struct {
	counts [latencyBuckets]uint64
	total  uint64
}

// add counts one duration.
func (l *latencies) add(d time.Duration) {
	l.counts[latencyBucket(max(d, 0))]++
	l.total++
}

// latencyBucket is the bucket of d: d itself below 128 ns, then 64 buckets per power of two.
func latencyBucket(d time.Duration) int {
	v := uint64(d)
	if v < 128 {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	return shift*64 + int(v>>shift)
}

// bucketMiddle is the duration in the middle of bucket i.
func bucketMiddle(i int) time.Duration {
	if i < 128 {
		return time.Duration(i)
	}
	shift := i/64 - 1
	low := uint64(i-shift*64) << shift
	return time.Duration(low + 1<<shift/2)
}

// micros is the q quantile (0 < q ≤ 1) of the durations counted, in microseconds: the
// middle of the bucket that holds the ⌈q·total⌉th shortest. It is 0 if none were counted.
func (l *latencies) micros(q float64) float64 {
	if l.total == 0 {
		return 0
	}
	rank := min(max(uint64(math.Ceil(q*float64(l.total)-1e-9)), 1), l.total)
	var seen uint64
	for i, c := range l.counts {
		if seen += c; seen >= rank {
			return float64(bucketMiddle(i)) / 1e3
		}
	}
	return 0
}
