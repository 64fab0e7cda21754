package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Consistency checks: a group's policy may ask the server for a scheduled
// verify of the group's points (--check), which also reads back a share
// of the store's packs each run (--check-read-share), rotating so that
// every pack is read within ceil(100/share) runs (ReadShare).
//
//	off         no scheduled check (the default)
//	daily       every day after the group's last recovery point time
//	weekly      once a week, after the last recovery point time of the
//	            last of the group's days (Monday first; "daily": Sunday)
//	on-failure  after a job of the group fails, once until a job of the
//	            group succeeds again

// Check schedules.
const (
	CheckOff       = "off"
	CheckDaily     = "daily"
	CheckWeekly    = "weekly"
	CheckOnFailure = "on-failure"
)

// DefaultCheckReadShare is the share of packs a scheduled check reads: a
// tenth, so every pack is read within ten checks.
const DefaultCheckReadShare = "10%"

const (
	allowedCheck     = "off, daily, weekly or on-failure"
	allowedReadShare = "a percentage of packs from 1% to 100%, like 10%"
)

var checkSchedules = []string{CheckOff, CheckDaily, CheckWeekly, CheckOnFailure}

// checkDefaults fills the check fields of p (Defaults).
func (p *Policy) checkDefaults() {
	if p.CheckSchedule == "" {
		p.CheckSchedule = CheckOff
	}
	if p.CheckReadShare == "" {
		p.CheckReadShare = DefaultCheckReadShare
	}
	if n, err := ParseReadShare(p.CheckReadShare); err == nil {
		p.CheckReadShare = strconv.Itoa(n) + "%"
	}
}

// checkCheck checks the check fields of p, which Defaults has filled.
func (p Policy) checkCheck() error {
	if !slices.Contains(checkSchedules, p.CheckSchedule) {
		return bad("check", p.CheckSchedule, allowedCheck)
	}
	if _, err := ParseReadShare(p.CheckReadShare); err != nil {
		return bad("check-read-share", p.CheckReadShare, allowedReadShare)
	}
	return nil
}

// ParseReadShare reads a share of packs, "10%" or "10", as a percentage
// from 1 to 100.
func ParseReadShare(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 1 || n > 100 {
		return 0, fmt.Errorf("%w: read share %q: allowed: %s", ErrBadPolicy, s, allowedReadShare)
	}
	return n, nil
}

// CheckWeekday is the day of the week a weekly check runs: the last of
// the policy's days, Monday first. The policy must be valid.
func (p Policy) CheckWeekday() int {
	d := p.Defaults().Days
	last := d[len(d)-1]
	if last == "daily" {
		return 0 // Sunday
	}
	return slices.Index(weekdays, last)
}
