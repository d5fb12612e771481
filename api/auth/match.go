package auth

// Match reports whether channel matches the glob pattern. '*' matches any run of bytes, including
// the empty run and runs holding '/' or ':'; every other byte matches only itself. So "*" matches
// every channel, "chat:*" matches "chat:lobby" and "chat:", and "orders:42" matches only itself.
//
// Matching takes time proportional to len(pattern)*len(channel) at worst, and no allocation.
func Match(pattern, channel string) bool {
	p, c := 0, 0
	// star is the index in pattern of the last '*' seen, -1 before any; resume is the index in
	// channel where the bytes taken by that '*' end.
	star, resume := -1, 0
	for c < len(channel) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, resume = p, c
			p++
		case p < len(pattern) && pattern[p] == channel[c]:
			p++
			c++
		case star >= 0:
			// Let the last '*' take one more byte and try again from there.
			resume++
			p, c = star+1, resume
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchAny reports whether any of the patterns matches channel.
func matchAny(patterns []string, channel string) bool {
	for _, p := range patterns {
		if Match(p, channel) {
			return true
		}
	}
	return false
}
