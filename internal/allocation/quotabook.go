package allocation

import "sync"

// QuotaBook is each user's effective gpu-equivalent quota, as the allocation controller
// last computed it, for the metrics (a scrape never asks the group database).
type QuotaBook struct {
	mu     sync.Mutex
	byUser map[string]Limit[float64]
}

// Set replaces the book.
func (b *QuotaBook) Set(byUser map[string]Limit[float64]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byUser = byUser
}

// Get returns the book.
func (b *QuotaBook) Get() map[string]Limit[float64] {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byUser
}
