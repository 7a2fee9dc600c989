package audit

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
)

// parallelMin is the size from which a plain file is scanned by several goroutines.
var parallelMin int64 = 16 << 20

// batchSize and batchQueue bound what a worker holds before the caller takes it: a query
// that matches few lines runs on every core; one that matches most is limited by fn.
const (
	batchSize  = 256
	batchQueue = 16
)

// readParallel scans f in contiguous chunks, one goroutine each, and calls fn for the
// matching events in file order.
func readParallel(ctx context.Context, f *os.File, size int64, m *matcher, st *ReadStats, fn func(*Event) error) error {
	bounds, err := chunkBounds(f, size, runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		batches chan []Event
		st      ReadStats
		err     error
	}
	results := make([]*result, len(bounds)-1)
	var wg sync.WaitGroup
	for i := range results {
		r := &result{batches: make(chan []Event, batchQueue)}
		results[i] = r
		wg.Add(1)
		go func(from, to int64) {
			defer wg.Done()
			defer close(r.batches)
			var batch []Event
			r.err = scan(ctx, io.NewSectionReader(f, from, to-from), m, &r.st, func(e *Event) error {
				batch = append(batch, *e)
				if len(batch) == batchSize {
					select {
					case r.batches <- batch:
					case <-ctx.Done():
						return ctx.Err()
					}
					batch = nil
				}
				return nil
			})
			if len(batch) > 0 && r.err == nil {
				select {
				case r.batches <- batch:
				case <-ctx.Done():
				}
			}
		}(bounds[i], bounds[i+1])
	}
	var ferr error
	for _, r := range results {
		for batch := range r.batches {
			for i := range batch {
				if ferr == nil {
					ferr = fn(&batch[i])
				}
			}
			if ferr != nil {
				cancel()
			}
		}
	}
	wg.Wait()
	for _, r := range results {
		st.Lines += r.st.Lines
		st.Malformed += r.st.Malformed
		st.TooLong += r.st.TooLong
		if ferr == nil && r.err != nil && !errors.Is(r.err, context.Canceled) {
			ferr = r.err
		}
	}
	if ferr == nil {
		ferr = ctx.Err()
	}
	return ferr
}

// chunkBounds splits [0,size) into n ranges that start at line beginnings.
func chunkBounds(f *os.File, size int64, n int) ([]int64, error) {
	bounds := []int64{0}
	for i := 1; i < n; i++ {
		at := size * int64(i) / int64(n)
		if at <= bounds[len(bounds)-1] {
			continue
		}
		br := bufio.NewReaderSize(io.NewSectionReader(f, at, size-at), 64<<10)
		skipped := int64(0)
		for {
			chunk, err := br.ReadSlice('\n')
			skipped += int64(len(chunk))
			if err == nil || err == io.EOF {
				break
			}
			if err != bufio.ErrBufferFull {
				return nil, err
			}
		}
		if next := at + skipped; next < size && next > bounds[len(bounds)-1] {
			bounds = append(bounds, next)
		}
	}
	return append(bounds, size), nil
}
