package modes

// Ethernet header, RFC 894:
//
//	0                   6                  12      14
//	+-------------------+-------------------+-------+
//	| destination MAC   | source MAC        | type  |
//	+-------------------+-------------------+-------+

// DR rewrites frame for direct routing: the destination MAC becomes the
// real server's and the source MAC the director's. The IP packet is left
// alone. frame must hold at least an Ethernet header; the caller parsed it.
func DR(frame []byte, dst, src *[6]byte) {
	_ = frame[11]
	copy(frame[0:6], dst[:])
	copy(frame[6:12], src[:])
}
