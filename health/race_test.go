//go:build race

package health

// raceEnabled: the race detector makes each probe several times dearer.
const raceEnabled = true
