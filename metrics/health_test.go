//go:build linux

package metrics

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbproject/xlb/health"
)

type fakeHealth health.Status

func (f fakeHealth) Status() health.Status { return health.Status(f) }

func TestHealthCollector(t *testing.T) {
	st := fakeHealth{Services: []health.ServiceStatus{{
		Service: "TCP 10.0.0.1:80", Sorry: netip.MustParseAddrPort("10.0.0.9:80"), SorryActive: false,
		Reals: []health.RealStatus{
			{Dest: netip.MustParseAddrPort("10.0.1.1:80"), Healthy: true, Present: true, Weight: 3, Transitions: 2,
				Checks: []health.CheckStatus{{Kind: health.HTTPGet, Checks: 10}, {Kind: health.TCPCheck, Checks: 4, Failures: 0}}},
			{Dest: netip.MustParseAddrPort("10.0.1.2:80"), Healthy: false, Present: false, Weight: 0, Transitions: 1,
				Checks: []health.CheckStatus{{Kind: health.TCPCheck, Checks: 7, Failures: 2}}},
		},
	}}}
	c := NewHealthCollector(st)
	want := `# HELP xlb_health_real_server_up 1 while the health checkers find the real server healthy, else 0.
# TYPE xlb_health_real_server_up gauge
xlb_health_real_server_up{dest="10.0.1.1:80",service="TCP 10.0.0.1:80"} 1
xlb_health_real_server_up{dest="10.0.1.2:80",service="TCP 10.0.0.1:80"} 0
# HELP xlb_health_transitions_total Changes of the real server's health (up to down and back).
# TYPE xlb_health_transitions_total counter
xlb_health_transitions_total{dest="10.0.1.1:80",service="TCP 10.0.0.1:80"} 2
xlb_health_transitions_total{dest="10.0.1.2:80",service="TCP 10.0.0.1:80"} 1
# HELP xlb_health_real_server_weight Weight the health engine put the real server at: its configured or dynamic weight, 0 when drained or out.
# TYPE xlb_health_real_server_weight gauge
xlb_health_real_server_weight{dest="10.0.1.1:80",service="TCP 10.0.0.1:80"} 3
xlb_health_real_server_weight{dest="10.0.1.2:80",service="TCP 10.0.0.1:80"} 0
# HELP xlb_health_checks_total Probes run by one checker of the real server.
# TYPE xlb_health_checks_total counter
xlb_health_checks_total{checker="HTTP_GET",dest="10.0.1.1:80",service="TCP 10.0.0.1:80"} 10
xlb_health_checks_total{checker="TCP_CHECK",dest="10.0.1.1:80",service="TCP 10.0.0.1:80"} 4
xlb_health_checks_total{checker="TCP_CHECK",dest="10.0.1.2:80",service="TCP 10.0.0.1:80"} 7
# HELP xlb_health_sorry_server_active 1 while the virtual service's sorry server takes the new connections.
# TYPE xlb_health_sorry_server_active gauge
xlb_health_sorry_server_active{service="TCP 10.0.0.1:80"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "xlb_health_real_server_up", "xlb_health_transitions_total",
		"xlb_health_real_server_weight", "xlb_health_checks_total", "xlb_health_sorry_server_active"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
