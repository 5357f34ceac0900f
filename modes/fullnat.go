package modes

// fullnatIn is how a client's frame goes to a FULLNAT real server: source
// client:cport := laddr:lport, destination VIP:vport := RS:rport, so the
// real server answers the director whatever its routes. Xmit applies it:
// TTL decremented, checksums updated once for all four changes, Ethernet
// rewritten.
func fullnatIn(p *Plan) (src *[16]byte, sport uint16, dst *[16]byte, dport uint16) {
	return &p.Laddr, p.Lport, &p.RS, p.RPort
}

// fullnatOut is how a FULLNAT real server's reply goes to the client:
// source RS:rport := VIP:vport, destination laddr:lport := client:cport.
func fullnatOut(p *Plan) (src *[16]byte, sport uint16, dst *[16]byte, dport uint16) {
	return &p.VIP, p.VPort, &p.Client, p.ClientPort
}
