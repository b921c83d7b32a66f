package testutil

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

// Netns is a set of network namespaces joined by a bridge, each one a test
// host with its own address, plus a veth from the host's namespace so the
// test itself can reach them. Addresses are only ever those of these
// namespaces, in a 10.x.0.0/24 that exists only inside them.
type Netns struct {
	id    string
	hub   string
	Names []string // namespace of host i
	Hosts []string // address of host i
}

// NewNetns creates n hosts; the caller closes them. It needs root.
func NewNetns(n int) (nn *Netns, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("network namespaces need root")
	}
	id := fmt.Sprintf("%04x", rand.IntN(0xffff))
	sub := 100 + rand.IntN(150)
	nn = &Netns{id: id, hub: "mrn" + id + "h"}
	defer func() {
		if err != nil {
			nn.Close()
		}
	}()
	if err := ipRun("netns", "add", nn.hub); err != nil {
		return nn, err
	}
	steps := [][]string{
		{"-n", nn.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nn.hub, "link", "set", "br0", "up"},
	}
	// The way in from the host's namespace: a veth to the bridge.
	rootIf, hubIf := "mrn"+id+"r", "mrn"+id+"rh"
	steps = append(steps,
		[]string{"link", "add", rootIf, "type", "veth", "peer", "name", hubIf, "netns", nn.hub},
		[]string{"-n", nn.hub, "link", "set", hubIf, "master", "br0", "up"},
		[]string{"addr", "add", fmt.Sprintf("10.%d.0.254/24", sub), "dev", rootIf},
		[]string{"link", "set", rootIf, "up"})
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("mrn%sn%d", id, i)
		host := fmt.Sprintf("10.%d.0.%d", sub, i)
		in, out := fmt.Sprintf("mrn%s%d", id, i), fmt.Sprintf("mrn%s%dh", id, i)
		steps = append(steps,
			[]string{"netns", "add", name},
			[]string{"-n", name, "link", "set", "lo", "up"},
			[]string{"link", "add", in, "netns", name, "type", "veth", "peer", "name", out, "netns", nn.hub},
			[]string{"-n", name, "addr", "add", host + "/24", "dev", in},
			[]string{"-n", name, "link", "set", in, "up"},
			[]string{"-n", nn.hub, "link", "set", out, "master", "br0", "up"})
		nn.Names = append(nn.Names, name)
		nn.Hosts = append(nn.Hosts, host)
	}
	for _, s := range steps {
		if err := ipRun(s...); err != nil {
			return nn, err
		}
	}
	return nn, nil
}

func ipRun(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Cut isolates host i from every other host and from the test.
func (nn *Netns) Cut(i int) error {
	return ipRun("-n", nn.hub, "link", "set", fmt.Sprintf("mrn%s%dh", nn.id, i+1), "down")
}

// Heal reconnects host i.
func (nn *Netns) Heal(i int) error {
	return ipRun("-n", nn.hub, "link", "set", fmt.Sprintf("mrn%s%dh", nn.id, i+1), "up")
}

// Close deletes the namespaces (and with them every link).
func (nn *Netns) Close() {
	for _, n := range nn.Names {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
	_ = exec.Command("ip", "netns", "del", nn.hub).Run()
}
