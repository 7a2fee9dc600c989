package manager

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Every runs fn every interval until ctx ends, logging its errors as what.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context) error, what string) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				ctrl.LoggerFrom(ctx).Error(err, what)
			}
		}
	}
}
