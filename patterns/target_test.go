package patterns

import "testing"

func TestTarget(t *testing.T) {
	tests := []struct {
		t    Target
		name string
	}{
		{TargetPath, "path"},
		{TargetQuery, "query"},
		{TargetHeaders, "headers"},
		{TargetBody, "body"},
		{TargetPath | TargetQuery, "path|query"},
		{AllTargets, "path|query|headers|body"},
		{0, "none"},
		{0x40, "0x40"},
		{TargetBody | 0x30, "body|0x30"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.name {
			t.Errorf("Target(%#x).String() = %q, want %q", uint8(tt.t), got, tt.name)
		}
	}
	for _, name := range []string{"path", "query", "headers", "body"} {
		tg, ok := ParseTarget(name)
		if !ok || tg.String() != name || tg&(tg-1) != 0 || tg&AllTargets == 0 {
			t.Errorf("ParseTarget(%q) = %v, %v", name, tg, ok)
		}
	}
	for _, bad := range []string{"", "Path", "header", "all", "path|query", " body"} {
		if tg, ok := ParseTarget(bad); ok {
			t.Errorf("ParseTarget(%q) = %v, true; want false", bad, tg)
		}
	}
}
