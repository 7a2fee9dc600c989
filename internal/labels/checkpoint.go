package labels

import (
	"fmt"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// MaxCheckpointCommand is the longest checkpoint command a container may declare.
const MaxCheckpointCommand = 1024

// Checkpoint is the checkpoint hook a container's labels declare (gpuwarden.io/checkpoint),
// "" when none, and the timeout it asks for (gpuwarden.io/checkpoint-timeout), 0 when none.
// Labels that cannot be used (CheckpointProblem says why) declare no hook.
func Checkpoint(l map[string]string) (string, time.Duration) {
	if CheckpointProblem(l) != nil {
		return "", 0
	}
	var d time.Duration
	if v := l[gpuwardenv1alpha1.LabelCheckpointTimeout]; v != "" {
		d, _ = checkpointTimeout(v)
	}
	return strings.TrimSpace(l[gpuwardenv1alpha1.LabelCheckpoint]), d
}

// CheckpointProblem says what is wrong with a container's checkpoint labels, nil when they
// can be used or are absent.
func CheckpointProblem(l map[string]string) error {
	v, hook := l[gpuwardenv1alpha1.LabelCheckpoint]
	if hook {
		switch {
		case strings.TrimSpace(v) == "":
			return fmt.Errorf("label %s is empty: give the command that saves the work, such as \"python save.py\"", gpuwardenv1alpha1.LabelCheckpoint)
		case len(v) > MaxCheckpointCommand:
			return fmt.Errorf("label %s is %d characters long; a checkpoint command is at most %d", gpuwardenv1alpha1.LabelCheckpoint, len(v), MaxCheckpointCommand)
		case strings.ContainsRune(v, 0):
			return fmt.Errorf("label %s contains a NUL character", gpuwardenv1alpha1.LabelCheckpoint)
		}
	}
	if v, ok := l[gpuwardenv1alpha1.LabelCheckpointTimeout]; ok && v != "" { // "": blanked, none
		if !hook {
			return fmt.Errorf("label %s is set without %s: a timeout needs a checkpoint command", gpuwardenv1alpha1.LabelCheckpointTimeout, gpuwardenv1alpha1.LabelCheckpoint)
		}
		if _, err := checkpointTimeout(v); err != nil {
			return err
		}
	}
	return nil
}

func checkpointTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if len(v) > 32 || err != nil || d < time.Second {
		if len(v) > 32 {
			v = v[:32] + "…"
		}
		return 0, fmt.Errorf("label %s=%q is not a timeout: give a duration of at least 1s, such as 2m", gpuwardenv1alpha1.LabelCheckpointTimeout, v)
	}
	return d, nil
}
