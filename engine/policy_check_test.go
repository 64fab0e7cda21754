package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyCheckFields(t *testing.T) {
	for _, c := range []struct {
		name      string
		p         Policy
		bad       string // flag named in the error; "" accepted
		allowed   string
		wantShare string
	}{
		{"defaults", Policy{}, "", "", "10%"},
		{"daily", Policy{CheckSchedule: "daily"}, "", "", "10%"},
		{"weekly, share without %", Policy{CheckSchedule: "weekly", CheckReadShare: "25"}, "", "", "25%"},
		{"on-failure, all packs", Policy{CheckSchedule: "on-failure", CheckReadShare: "100%"}, "", "", "100%"},
		{"one percent", Policy{CheckSchedule: "daily", CheckReadShare: " 1% "}, "", "", "1%"},
		{"unknown schedule", Policy{CheckSchedule: "hourly"}, "--check", allowedCheck, ""},
		{"capitals", Policy{CheckSchedule: "Daily"}, "--check", allowedCheck, ""},
		{"share zero", Policy{CheckReadShare: "0%"}, "--check-read-share", allowedReadShare, ""},
		{"share over 100", Policy{CheckReadShare: "101%"}, "--check-read-share", allowedReadShare, ""},
		{"share fraction", Policy{CheckReadShare: "2.5%"}, "--check-read-share", allowedReadShare, ""},
		{"share word", Policy{CheckReadShare: "some"}, "--check-read-share", allowedReadShare, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Check()
			if c.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d := c.p.Defaults(); d.CheckReadShare != c.wantShare || (c.p.CheckSchedule == "" && d.CheckSchedule != CheckOff) {
					t.Errorf("defaults: check %q, share %q; want share %q", d.CheckSchedule, d.CheckReadShare, c.wantShare)
				}
				return
			}
			if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), c.bad+" ") {
				t.Errorf("err %v, want ErrBadPolicy naming %s", err, c.bad)
			}
			if !strings.Contains(err.Error(), c.allowed) {
				t.Errorf("err %v does not name the allowed values", err)
			}
		})
	}
}

func TestCheckWeekday(t *testing.T) {
	for _, c := range []struct {
		days []string
		want int
	}{
		{nil, 0},
		{[]string{"daily"}, 0},
		{[]string{"mon", "tue", "wed", "thu", "fri"}, 5},
		{[]string{"sun", "wed"}, 0}, // Monday first: Sunday is last
		{[]string{"tue"}, 2},
	} {
		if got := (Policy{Days: c.days}).CheckWeekday(); got != c.want {
			t.Errorf("days %v: weekday %d, want %d", c.days, got, c.want)
		}
	}
}
