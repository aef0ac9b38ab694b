package filter

import (
	"net/netip"
	"strings"
)

// maxKeyLen bounds a rate-limit key taken from a request (a header value or
// an unparsable address), so a client cannot make the filter hash or log
// arbitrarily long strings.
const maxKeyLen = 256

// clientIP returns the rate-limit key of a client address:
//
//   - with xffHops = 0 it is the downstream address (sourceAddress, Envoy's
//     source.address property, "ip:port"). Where Envoy itself picks the
//     client from x-forwarded-for (use_remote_address with its own
//     xff_num_trusted_hops), source.address already is that client: set
//     the trusted hops there and leave xffHops 0.
//   - with xffHops = N > 0 it is the N-th entry from the right of
//     x-forwarded-for as the trusted proxies wrote it, the meaning of
//     Envoy's xff_num_trusted_hops: the right-most N entries were written
//     by the N trusted proxies in front. When Envoy has appended the
//     downstream address itself (use_remote_address: true), that last
//     entry equals sourceAddress and is not counted. When fewer than N
//     entries remain, the request did not come through the trusted proxies
//     and the downstream address is used.
//
// IPv4 addresses key as "ip:a.b.c.d". IPv6 addresses key by their /64
// prefix ("ip6:2001:db8::/64"), because one host usually owns a whole /64
// and could otherwise take a fresh bucket per request. An address that does
// not parse keys by its raw text (bounded by maxKeyLen).
func clientIP(sourceAddress, xff string, xffHops int) string {
	addr := sourceAddress
	if xffHops > 0 {
		if last, ok := xffEntry(xff, 1); ok && sameIP(last, sourceAddress) {
			xffHops++
		}
		if e, ok := xffEntry(xff, xffHops); ok {
			addr = e
		}
	}
	return addrKey(addr)
}

// sameIP reports whether an x-forwarded-for entry names the IP of an
// "ip:port" source address.
func sameIP(entry, sourceAddress string) bool {
	ap, err := netip.ParseAddrPort(sourceAddress)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(entry)
	return err == nil && a.Unmap() == ap.Addr().Unmap()
}

// xffEntry returns the n-th comma-separated entry from the right.
func xffEntry(xff string, n int) (string, bool) {
	for i := 1; ; i++ {
		j := strings.LastIndexByte(xff, ',')
		entry := strings.TrimSpace(xff[j+1:])
		if i == n {
			return entry, entry != ""
		}
		if j < 0 {
			return "", false
		}
		xff = xff[:j]
	}
}

func addrKey(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			if len(s) > maxKeyLen {
				s = s[:maxKeyLen]
			}
			return "raw:" + s
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return "ip:" + a.String()
	}
	p, _ := a.Prefix(64)
	return "ip6:" + p.String()
}
