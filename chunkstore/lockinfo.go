package chunkstore

import "encoding/json"

// parseLockInfo decodes the lock file, which its holder writes as JSON
// (LockWriter). The file is read while another process holds the lock and
// may be empty (it is truncated before it is written) or half written:
// whatever parses is kept, so a message can still name the holder's pid.
func parseLockInfo(b []byte) (LockInfo, error) {
	var i LockInfo
	err := json.Unmarshal(b, &i)
	return i, err
}
