package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// defaultMountpoint is where `recall share` assumes the tree is mounted.
const defaultMountpoint = "/srv/recall"

func init() {
	register(&cli.Command{
		Name:  "share",
		Usage: "print configuration that shares recovery points with other systems",
		Subcommands: []*cli.Command{{
			Name:  "samba",
			Usage: "print an smb.conf share that shows a source's recovery points as Windows \"Previous Versions\"",
			Description: `The share serves the live directory (--share-path) and, through Samba's shadow_copy2
module, the source's recovery points in the mounted recovery tree as previous versions.
Mount the tree first with --allow-other (smbd reads it as the connected user; access
follows the backed-up owners and modes).

A source whose protection group has end-user recovery off is refused: the mounted
tree leaves it out, so the share would show no previous versions.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "data source `NAME`", Required: true},
				&cli.StringFlag{Name: "share-path", Usage: "live directory the share serves (`PATH`; default: the directory the source backs up)"},
				&cli.StringFlag{Name: "mountpoint", Value: defaultMountpoint, Usage: "where the recovery tree is mounted (`MNT`)"},
				&cli.StringFlag{Name: "name", Usage: "share `NAME` (default: the source name)"},
			},
			Action: shareSamba,
		}, {
			Name:  "bmr-target",
			Usage: "print (with --apply: install) the writable share a Windows computer's Windows Server Backup writes its image to",
			Description: `The share's path is the source's staging directory, writable by one Samba user
(--user; default: the user recorded by an earlier --apply, else "wsb-" and the source
name in lower case) and only in WindowsImageBackup\<Computer>: another computer cannot
create its folder. WSB gets the user and password with -user: and -password:.

The user serves one source: a user recorded for another source is refused. It is
never root (uid 0) nor Samba's guest account ('guest account' in smb.conf, by default
nobody). An existing account is taken when it is the one recorded for this source (the
user --apply created or took); any other (a service's like www-data or daemon, a
person's) only with --allow-existing-user.

A share of that name is refused when the administrator's configuration defines it
(smb.conf, the files it includes and registry shares, as 'testparm -s' resolves them;
smb.conf alone when testparm is not installed), or when recall-shares.conf holds it
for another source or as a bmr-recovery share: give another --name.

--apply creates the Unix user when missing (a system user without home or shell)
and records it in the source, gives a new Samba account its password (from
--password-file, else RECALL_SMB_PASSWORD, else a new one printed once), readies the
staging folders, writes the share into recall-shares.conf beside smb.conf (which gets
one include line) and reloads smbd. An existing Samba account keeps its password and its state (a disabled one stays disabled) unless a password is
given explicitly: --password-file resets it and enables the account; RECALL_SMB_PASSWORD
does so only for the account recorded for this source, and is refused for any other.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "registered bmr or systemstate data source `NAME`", Required: true},
				&cli.StringFlag{Name: "user", Usage: "Samba and Unix `USER` WSB logs on as"},
				&cli.StringFlag{Name: "name", Usage: "share `NAME` (default: the source name)"},
				&cli.BoolFlag{Name: "apply", Usage: "install the share and its user and reload smbd (else only print it)"},
				&cli.StringFlag{Name: "smb-conf", Value: engine.DefaultSmbConf, Usage: "Samba configuration `FILE` to install into"},
				&cli.StringFlag{Name: "password-file", Usage: "read the Samba user's password from the first line of `FILE` (else RECALL_SMB_PASSWORD, else generated); resets an existing Samba account's password and enables it"},
				&cli.BoolFlag{Name: "allow-existing-user", Usage: "take an existing account not recorded for this source as --user (never root nor Samba's guest account)"},
			},
			Action: shareBMRTarget,
		}, {
			Name:      "bmr-recovery",
			Usage:     "print (with --apply: install) a read-only share of one recovery point whose root holds WindowsImageBackup, for Windows RE and wbadmin",
			ArgsUsage: "POINT (an id or a prefix of one, or \"latest\" with --source)",
			Description: `The share's path is the point's directory in the mounted recovery tree
(<mountpoint>/<source>/@GMT-...), so its root holds WindowsImageBackup: what Windows
RE's "Search for a system image on the network" and 'wbadmin get versions
-backupTarget:\\server\share' look for. Mount the tree first with
'recall mount --allow-other MNT': smbd reads it as the connected user.

--apply writes the share into recall-shares.conf beside smb.conf (which gets one
include line) and reloads smbd. The user (default: the one 'share bmr-target
--apply' recorded for the source) must exist already.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "source", Usage: "data source `NAME` of the point"},
				&cli.StringFlag{Name: "user", Usage: "Samba `USER` Windows RE logs on as (default: the source's)"},
				&cli.StringFlag{Name: "name", Usage: "share `NAME` (default: <source>-<point time as YYYYMMDD-HHMMSS>)"},
				&cli.StringFlag{Name: "mountpoint", Value: defaultMountpoint, Usage: "where the recovery tree is mounted (`MNT`)"},
				&cli.BoolFlag{Name: "apply", Usage: "install the share and reload smbd (else only print it)"},
				&cli.StringFlag{Name: "smb-conf", Value: engine.DefaultSmbConf, Usage: "Samba configuration `FILE` to install into"},
			},
			Action: shareBMRRecovery,
		}},
	})
}

func shareSamba(c *cli.Context) error {
	source := c.String("source")
	if err := engine.ValidSourceName(source); err != nil {
		return usagef("--source: %v", err)
	}
	mnt, err := filepath.Abs(c.String("mountpoint"))
	if err != nil {
		return err
	}
	off, err := engine.NoEndUserRecovery(c.String("home"), catalogWait)
	if err != nil {
		return fmt.Errorf("check the end-user recovery of source %q: %w", source, err)
	}
	if g, ok := off[source]; ok {
		return fmt.Errorf("source %q: protection group %q: %w, so the mounted tree leaves the source out and a share would show no previous versions; allow it with 'recall group edit %s --end-user-recovery on'",
			source, g, engine.ErrNoEndUserRecovery, g)
	}
	// What the source backs up, when the store knows it.
	var backedUp string
	if st, err := openStore(c); err == nil {
		if p, err := st.Reader().FindPoint("latest", source); err == nil {
			backedUp = p.Path
		} else {
			logf("warning: %v; the share shows no previous versions until it has a recovery point", err)
		}
		st.Close()
	} else {
		logf("warning: cannot read the store (%v); check --source yourself", err)
	}
	sharePath := c.String("share-path")
	if sharePath == "" {
		if backedUp == "" {
			return usagef("--share-path is needed: no recovery point of source %q tells which directory it backs up", source)
		}
		if strings.ContainsRune(backedUp, utf8.RuneError) {
			// The manifest keeps paths in UTF-8, each byte that is not
			// as U+FFFD: that path is another directory, or none.
			return usagef("--share-path is needed: source %q backs up %q, whose name is not all UTF-8: its points keep it with U+FFFD in place of those bytes, so they cannot tell the directory; give it with --share-path", source, backedUp)
		}
		sharePath = backedUp
	}
	if sharePath, err = filepath.Abs(sharePath); err != nil {
		return err
	}
	// A share is a directory: Samba refuses one whose path is a file
	// ("is not a directory"), and the block was written all the same.
	if fi, err := os.Stat(sharePath); err == nil && !fi.IsDir() {
		if c.String("share-path") == "" {
			return usagef("source %q backs up the file %s, not a directory: a share serves a directory; share the directory it is in from a source that backs that up", source, sharePath)
		}
		return usagef("--share-path %s is not a directory: a share serves a directory; give the directory source %q backs up or one inside it", sharePath, source)
	}
	shadowMount, err := shadowMountpoint(source, sharePath, backedUp)
	if err != nil {
		return err
	}
	name := c.String("name")
	if name == "" {
		name = source
	}
	if err := engine.ValidShareName(name); err != nil {
		return usagef("%v", err)
	}
	snapdir := filepath.Join(mnt, source)
	if err := checkSharePaths(source, sharePath, shadowMount, mnt, snapdir); err != nil {
		return err
	}
	block := engine.SambaShare{
		Name: name,
		Comment: []string{
			fmt.Sprintf("Previous Versions of %s from the recovery points of source %q.", sharePath, source),
			"Needs the recovery tree mounted for other users first:",
			fmt.Sprintf("  recall --home %s mount --allow-other %s", shellWord(homeForDocs(c)), shellWord(mnt)),
			fmt.Sprintf("or in /etc/fstab:  %s  %s  recall  allow_other,nofail  0  0", fstabField(homeForDocs(c)), fstabField(mnt)),
			"Other VFS modules you use go on the same 'vfs objects' line.",
		},
		Params: []engine.SambaParam{
			{Key: "path", Value: sharePath},
			{Key: "vfs objects", Value: "shadow_copy2"},
			{Key: "shadow:snapdir", Value: snapdir},
			{Key: "shadow:mountpoint", Value: shadowMount},
			{Key: "shadow:format", Value: fs.ShadowFormat},
			{Key: "shadow:localtime", Value: "no"},
			{Key: "shadow:sort", Value: "desc"},
			{Key: "shadow:snapdirseverywhere", Value: "no"},
			{Key: "shadow:crossmountpoints", Value: "no"},
		},
	}
	// The name and comments (the home may hold anything). The values
	// were checked above, but for shadow:format, whose '%'s are its own:
	// a strftime format, which Samba hands to shadow_copy2 as written.
	if err := (engine.SambaShare{Name: name, Comment: block.Comment}).CheckText(); err != nil {
		return usagef("%v", err)
	}
	fmt.Fprint(c.App.Writer, block.String())
	return nil
}

// shadowMountpoint is shadow:mountpoint of a share of sharePath: the
// directory the point roots correspond to, the one source backs up
// (backedUp), of which sharePath must be the directory itself or one
// inside it. A share of anything else would show, as a file's previous
// versions, whatever the points hold at the same relative path: another
// file's contents. backedUp "" (no point yet, or an unreadable store:
// already warned about) cannot be checked: sharePath is taken as it.
func shadowMountpoint(source, sharePath, backedUp string) (string, error) {
	if backedUp == "" {
		logf("warning: cannot check that --share-path %s is the directory source %q backs up or one inside it: the share takes it as the one backed up", sharePath, source)
		return sharePath, nil
	}
	if within(sharePath, backedUp) {
		return backedUp, nil
	}
	if strings.ContainsRune(backedUp, utf8.RuneError) && within(asManifest(sharePath), backedUp) {
		// The directory backed up is sharePath's ancestor as deep as
		// backedUp, in its real bytes.
		parts := strings.Split(sharePath, "/")
		return strings.Join(parts[:strings.Count(strings.TrimSuffix(backedUp, "/"), "/")+1], "/"), nil
	}
	q := func(p string) string {
		// Quoted where bytes that are not UTF-8, or U+FFFD, would
		// print the two paths alike.
		if !utf8.ValidString(p) || strings.ContainsRune(p, utf8.RuneError) {
			return fmt.Sprintf("%q", p)
		}
		return p
	}
	return "", usagef("--share-path %s is neither %s, the directory source %q backs up, nor inside it: the Previous Versions of its files would show the files at the same places in %s; give --share-path %s or a directory inside it (or share the source that backs up %s)",
		q(sharePath), q(backedUp), source, q(backedUp), q(backedUp), q(sharePath))
}

// asManifest is path as a point's manifest keeps it: UTF-8, each byte
// that is not UTF-8 as U+FFFD (encoding/json's way).
func asManifest(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); {
		r, n := utf8.DecodeRuneInString(path[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(path[i : i+n])
		}
		i += n
	}
	return b.String()
}

// within reports whether the clean absolute path p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// checkSharePaths refuses, saying what to do instead, a path of a
// Previous Versions stanza that Samba would read as another one
// (engine.CheckSambaValue): the share's path, the backed-up directory
// (shadow:mountpoint) and snapdir, the source's directory in the tree
// mounted at mnt. Checked before anything is printed: a stanza appended
// to smb.conf as it comes would serve, or hide, another directory.
func checkSharePaths(source, sharePath, shadowMount, mnt, snapdir string) error {
	elsewhere := fmt.Sprintf("back the directory up, and share it, from a path without it (a bind mount: mount --bind %s /srv/NEW; recall backup --source NAME /srv/NEW), then share that source", bindFrom(shadowMount))
	if err := engine.CheckSambaValue(sharePath); err != nil {
		return usagef("share path %q cannot be written in smb.conf: %v; give --share-path a directory whose path has none of it, or %s", sharePath, err, elsewhere)
	}
	if err := engine.CheckSambaValue(shadowMount); err != nil {
		return usagef("the directory source %q backs up, %q, cannot be written in smb.conf: %v; %s", source, shadowMount, err, elsewhere)
	}
	if err := engine.CheckSambaValue(mnt); err != nil {
		return usagef("mount point %q cannot be written in smb.conf: %v; mount the recovery tree at a path without it and give that as --mountpoint", mnt, err)
	}
	if err := engine.CheckSambaValue(snapdir); err != nil {
		return usagef("source name %q cannot be written in smb.conf (shadow:snapdir %s): %v; back the directory up under another --source name and share that source", source, snapdir, err)
	}
	return nil
}

func homeForDocs(c *cli.Context) string {
	h, err := filepath.Abs(c.String("home"))
	if err != nil {
		return c.String("home")
	}
	return h
}

// smbPasswordEnv holds the Samba password of a bmr-target user when no
// --password-file is given.
const smbPasswordEnv = "RECALL_SMB_PASSWORD"

// registeredSource returns the registered source name.
func registeredSource(c *cli.Context, name string) (engine.Source, error) {
	var src engine.Source
	err := withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		var err error
		src, err = cat.Source(name)
		return err
	})
	return src, err
}

func isImageKind(kind string) bool { return kind == engine.KindBMR || kind == engine.KindSystemState }

func shareBMRTarget(c *cli.Context) error {
	name := c.String("source")
	if err := engine.ValidSourceName(name); err != nil {
		return usagef("--source: %v", err)
	}
	src, err := registeredSource(c, name)
	if err != nil {
		return err
	}
	if !isImageKind(src.Kind) {
		return usagef("source %q is of kind %s: a bmr-target share is for the Windows image of a bmr or systemstate source; add one with 'recall source add NAME --kind bmr --computer PC'", name, src.Kind)
	}
	user := c.String("user")
	if user == "" {
		user = src.User
	}
	if user == "" {
		user = "wsb-" + strings.ToLower(name)
		if err := engine.ValidUnixUser(user); err != nil {
			return usagef("source name %q makes no valid user name (%v)", name, err)
		}
	}
	share := c.String("name")
	if share == "" {
		share = name
	}
	if err := engine.ValidShareName(share); err != nil {
		return usagef("%v", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "server"
	}
	wbadmin := fmt.Sprintf(`wbadmin start backup -backupTarget:\\%s\%s -allCritical -systemState -quiet -user:%s -password:...`, host, share, user)
	if src.Kind == engine.KindSystemState {
		wbadmin = fmt.Sprintf(`wbadmin start backup -backupTarget:\\%s\%s -systemState -quiet -user:%s -password:...`, host, share, user)
	}
	block := engine.SambaShare{
		Name:   share,
		Source: name,
		Kind:   engine.ShareKindTarget,
		Comment: []string{
			fmt.Sprintf("Staging share of data source %q (kind %s) for computer %s: its Windows Server", name, src.Kind, src.Computer),
			"Backup writes the system image here, and recall makes a recovery point of it:",
			"  " + wbadmin,
			fmt.Sprintf(`Only WindowsImageBackup\%s is writable: another computer cannot create its folder.`, src.Computer),
			"WSB speaks SMB2 or later: keep 'server min protocol' at SMB2_02 or above in [global].",
		},
		Params: []engine.SambaParam{
			{Key: "comment", Value: fmt.Sprintf("recall: system image of %s (source %s)", src.Computer, name)},
			{Key: "path", Value: src.Staging},
			{Key: "valid users", Value: user},
			{Key: "read only", Value: "no"},
			{Key: "guest ok", Value: "no"},
			{Key: "browseable", Value: "no"},
			{Key: "create mask", Value: "0640"},
			{Key: "directory mask", Value: "0750"},
			{Key: "inherit permissions", Value: "no"},
			{Key: "vfs objects", Value: ""},
		},
	}
	if err := block.Check(); err != nil {
		return usagef("%v", err)
	}
	// The user is checked before the share is printed: a share for a user
	// that cannot serve is no advice to give.
	err = withCatalog(c, catalogWait, func(cat *engine.Catalog) error { return cat.CheckSourceUser(name, user) })
	if err != nil {
		return err
	}
	recorded := user == src.User
	acct, exists, err := engine.LookupUnixAccount(user)
	if err != nil {
		return err
	}
	if exists {
		guest, err := engine.SambaGuestAccount(c.String("smb-conf"))
		if err != nil {
			return err
		}
		if err := engine.CheckBMRUser(acct, guest, name, recorded, c.Bool("allow-existing-user")); err != nil {
			return usagef("%v", err)
		}
	}
	fmt.Fprint(c.App.Writer, block.String())
	if !c.Bool("apply") {
		return nil
	}
	conf, err := filepath.Abs(c.String("smb-conf"))
	if err != nil {
		return err
	}
	password, file, env, err := smbPassword(c)
	if err != nil {
		return err
	}
	if err := engine.CheckSambaShare(conf, block); err != nil {
		return err
	}
	has, err := engine.SambaUserExists(conf, user)
	if err != nil {
		return err
	}
	set, generate, err := engine.PlanSambaPassword(user, name, has, recorded, file, env)
	if err != nil {
		return usagef("%v", err)
	}
	u, created, err := engine.EnsureUnixUser(user)
	if err != nil {
		return err
	}
	if created {
		logf("created system user %s (no home, no login shell)", user)
	}
	// Recorded now, before anything that may fail: the next run takes
	// the user it finds as this source's own, not as an existing account
	// to refuse.
	err = withCatalog(c, catalogWait, func(cat *engine.Catalog) error {
		_, err := cat.EditSource(name, func(s *engine.Source) error {
			s.User = user
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("record user %s in source %s (run the command again): %w", user, name, err)
	}
	uid, gid, err := engine.UserIDs(u)
	if err != nil {
		return err
	}
	if uid == 0 {
		// Between the look-up above and now, only by a race.
		return usagef("user %s has uid 0: give another with --user", user)
	}
	switch {
	case generate:
		if password, err = newSMBPassword(); err != nil {
			return err
		}
		if err := engine.SetSambaPassword(conf, user, password); err != nil {
			return err
		}
		// Now, so that whatever fails later cannot hide it.
		fmt.Fprintf(c.App.Writer, "Samba password of %s (WSB's -password:; shown only now): %s\n", user, password)
	case set:
		if err := engine.SetSambaPassword(conf, user, password); err != nil {
			return err
		}
	default:
		logf("Samba user %s keeps its password and state (give --password-file to reset it)", user)
	}
	dir, err := engine.PrepareBMRStaging(src.Staging, src.Computer, uid, gid)
	if err != nil {
		return fmt.Errorf("source %s: %w", name, err)
	}
	inst, err := engine.InstallSambaShare(conf, block)
	if err != nil {
		return err
	}
	logf("WSB of %s writes into %s as %s", src.Computer, dir, user)
	installed(conf, share, inst)
	return nil
}

// smbPassword is the password --password-file or RECALL_SMB_PASSWORD
// gives, with the file or the variable's name it came from; all "" when
// neither gives one.
func smbPassword(c *cli.Context) (password, file, env string, err error) {
	if f := c.String("password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", "", "", fmt.Errorf("--password-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return "", "", "", usagef("--password-file %s: the first line is empty; write the Samba password there", f)
		}
		return line, f, "", nil
	}
	if pw := os.Getenv(smbPasswordEnv); pw != "" {
		return pw, "", smbPasswordEnv, nil
	}
	return "", "", "", nil
}

// newSMBPassword makes a password of 24 letters and digits (about 143
// bits), which wbadmin's -password: takes with no quoting.
func newSMBPassword() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	out := make([]byte, 0, 24)
	buf := make([]byte, 64)
	for len(out) < cap(out) {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("make a Samba password: %w", err)
		}
		for _, x := range buf {
			// Bytes past the last whole multiple of the alphabet would
			// favour its first letters.
			if int(x) < 256/len(alphabet)*len(alphabet) && len(out) < cap(out) {
				out = append(out, alphabet[int(x)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// installed says what InstallSambaShare did, checks the protocol floor
// WSB and Windows RE need, and reloads smbd: a reload that fails leaves
// the share written, for the administrator to load.
func installed(conf, share string, inst engine.SambaInstall) {
	switch {
	case inst.Changed:
		logf("share [%s] written to %s", share, inst.Include)
	default:
		logf("share [%s] is in %s as printed", share, inst.Include)
	}
	if inst.IncludeAdded {
		logf("added 'include = %s' to %s", inst.Include, conf)
	}
	if min, err := engine.SambaMinProtocol(conf); err != nil {
		logf("warning: cannot check the protocols Samba allows: %v", err)
	} else if p := strings.ToUpper(min); p == "NT1" || p == "LANMAN1" || p == "LANMAN2" || p == "CORE" || p == "COREPLUS" {
		logf("warning: %s allows %s; WSB and Windows RE use SMB2 or later: set 'server min protocol = SMB2_02' in [global]", conf, min)
	}
	if err := engine.ReloadSamba(conf); err != nil {
		logf("warning: smbd did not reload (%v); the share is written: reload it with 'smbcontrol smbd reload-config' or 'systemctl reload smbd'", err)
		return
	}
	logf("smbd reloaded its configuration")
}

func shareBMRRecovery(c *cli.Context) error {
	spec := c.Args().First()
	if spec == "" {
		return usagef("give the recovery point: an id (or a prefix of one) from 'recall points', or \"latest\" with --source")
	}
	source := c.String("source")
	if source != "" {
		if err := engine.ValidSourceName(source); err != nil {
			return usagef("--source: %v", err)
		}
	}
	mnt, err := filepath.Abs(c.String("mountpoint"))
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	r := st.Reader()
	p, err := r.FindPoint(spec, source)
	if err != nil {
		return err
	}
	pts, err := r.Points()
	if err != nil {
		return err
	}
	src, err := registeredSource(c, p.Source)
	registered := err == nil
	switch {
	case errors.Is(err, engine.ErrNoSource):
		// A point taken before its source was registered, or kept after
		// it was removed: its tree decides.
		logf("warning: source %q is not a registered bmr or systemstate source; serving point %s for the %s folder at its root", p.Source, p.ID.String()[:12], imageDir)
	case err != nil:
		return err
	case !isImageKind(src.Kind):
		return usagef("point %s is of source %q, of kind %s: a bmr-recovery share serves the points of bmr and systemstate sources; share other points with 'recall share samba'",
			p.ID.String()[:12], p.Source, src.Kind)
	}
	computers, owner, err := imageComputers(r, p, src.Computer)
	if err != nil {
		return err
	}
	if len(computers) == 0 {
		return fmt.Errorf("point %s of source %q (%s) holds no %s folder at its root, so Windows RE would find no system image in it; choose a point 'recall bmr versions --source %s' lists",
			p.ID.String()[:12], p.Source, p.Time.UTC().Format(time.RFC3339), imageDir, p.Source)
	}
	if registered && owner < 0 {
		logf("warning: point %s holds no image of computer %s, only of %s", p.ID.String()[:12], src.Computer, strings.Join(computers, ", "))
	}
	user := c.String("user")
	if user == "" {
		user = src.User
	}
	if user == "" {
		return usagef("give the Samba user Windows RE logs on as with --user: source %q has none recorded ('recall share bmr-target --source %s --apply' records one)", p.Source, p.Source)
	}
	share := c.String("name")
	if share == "" {
		// To the second, as the point's name in the tree (which is
		// unique in its source): two points of one minute (an image
		// ingested again, a retried run) had one share name, and
		// --apply moved the first one's share to the second.
		digits := strings.Map(func(r rune) rune {
			if r < '0' || r > '9' {
				return -1
			}
			return r
		}, mountName(p, pts)) // @GMT-2026.11.30-17.12.40: 20261130171240
		share = p.Source + "-" + digits[:8] + "-" + digits[8:]
	}
	if err := engine.ValidShareName(share); err != nil {
		return usagef("%v", err)
	}
	// By id, not by its @GMT name: a name is fixed only while a mount
	// lives, and after a forget and a remount it can be another point's
	// (the share then served that point's image). The id link serves
	// this point, or nothing once it is forgotten.
	pointDir := filepath.Join(mnt, p.Source, p.ID.String())
	host, _ := os.Hostname()
	if host == "" {
		host = "server"
	}
	block := engine.SambaShare{
		Name:   share,
		Source: p.Source,
		Kind:   engine.ShareKindRecovery,
		Comment: []string{
			fmt.Sprintf("Recovery point %s of data source %q (%s), made %s UTC: its root holds %s.",
				p.ID.String()[:12], p.Source, strings.Join(computers, ", "), p.Time.UTC().Format("2006-01-02 15:04:05"), imageDir),
			`Windows RE: Troubleshoot > System Image Recovery > Select a system image > Advanced >`,
			fmt.Sprintf(`Search for a system image on the network > \\%s\%s; or: wbadmin get versions -backupTarget:\\%s\%s`, host, share, host, share),
			"Needs the recovery tree mounted for other users first:",
			fmt.Sprintf("  recall --home %s mount --allow-other %s", shellWord(homeForDocs(c)), shellWord(mnt)),
			"While this block is here, 'recall prune' (and the server's) keeps the point: remove it when the recovery is done.",
		},
		Params: []engine.SambaParam{
			{Key: "comment", Value: fmt.Sprintf("recall: system image of %s, %s UTC", strings.Join(computers, ", "), p.Time.UTC().Format("2006-01-02 15:04"))},
			{Key: "path", Value: pointDir},
			{Key: "valid users", Value: user},
			{Key: "read only", Value: "yes"},
			{Key: "guest ok", Value: "no"},
			{Key: "browseable", Value: "no"},
			{Key: "vfs objects", Value: ""},
		},
	}
	// The files keep the owner and modes WSB's user gave them; a recovery
	// user who is someone else reads them as that owner (the share and the
	// tree are read-only).
	if owner >= 0 {
		if u, err := osuser.LookupId(strconv.Itoa(owner)); err == nil && u.Username != user {
			block.Params = append(block.Params, engine.SambaParam{Key: "force user", Value: u.Username})
		}
	}
	if err := block.Check(); err != nil {
		return usagef("%v", err)
	}
	if !treeMounted(c, mnt) {
		logf("warning: the recovery tree of %s is not mounted at %s: the share is useless until 'recall --home %s mount --allow-other %s'",
			homeForDocs(c), mnt, homeForDocs(c), mnt)
	} else if _, err := os.Stat(filepath.Join(pointDir, imageDir)); err != nil {
		logf("warning: the mount at %s does not show the point: %v (is its source left out by end-user recovery?)", mnt, err)
	}
	fmt.Fprint(c.App.Writer, block.String())
	if !c.Bool("apply") {
		return nil
	}
	conf, err := filepath.Abs(c.String("smb-conf"))
	if err != nil {
		return err
	}
	if err := engine.CheckSambaShare(conf, block); err != nil {
		return err
	}
	if _, err := osuser.Lookup(user); err != nil {
		return fmt.Errorf("user %s: %w: create it, or run 'recall share bmr-target --source %s --apply' which does, or give another with --user", user, err, p.Source)
	}
	if has, err := engine.SambaUserExists(conf, user); err != nil {
		logf("warning: %v", err)
	} else if !has {
		logf("warning: %s has no Samba password: set one with 'smbpasswd -a %s' before Windows RE logs on", user, user)
	}
	inst, err := engine.InstallSambaShare(conf, block)
	if err != nil {
		return err
	}
	if inst.OldPath != "" {
		// Made again under a name another point's share had (two points
		// of one second, or --name): said, as the other stops being served.
		logf("share [%s] served %s until now; it serves point %s instead (give another --name to serve both)", share, inst.OldPath, p.ID.String()[:12])
	}
	installed(conf, share, inst)
	return nil
}

// imageDir is the folder Windows Server Backup writes and Windows RE
// looks for at a share's root.
const imageDir = "WindowsImageBackup"

// imageComputers lists the computer folders under WindowsImageBackup at
// the root of p, and the uid owning computer's folder (names compare
// case-insensitively, as Windows's do), -1 when there is none.
func imageComputers(r *engine.Reader, p *engine.Point, computer string) ([]string, int, error) {
	ents, err := iofs.ReadDir(r.PointFS(p), imageDir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, -1, nil
	}
	if err != nil {
		return nil, -1, fmt.Errorf("read point %s: %w", p.ID.String()[:12], err)
	}
	var names []string
	owner := -1
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			return nil, -1, fmt.Errorf("read point %s: %w", p.ID.String()[:12], err)
		}
		if n, ok := fi.Sys().(*engine.Node); ok && computer != "" && strings.EqualFold(e.Name(), computer) {
			owner = int(n.UID)
		}
	}
	return names, owner, nil
}

// treeMounted reports whether a recovery tree of this home is mounted at
// mnt.
func treeMounted(c *cli.Context, mnt string) bool {
	dirs, err := fs.StoreMounts(c.String("home"))
	if err != nil {
		return false
	}
	at, err := fs.MountPath(mnt)
	if err != nil {
		return false
	}
	for _, d := range dirs {
		if d == at {
			return true
		}
	}
	return false
}

// shellWord quotes s for a shell command line, where it is more than
// letters, digits and -_./,:=@+ (a path with a space, a quote, a $).
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./,:=@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// bindFrom is the directory to bind-mount in a command a message
// suggests: as a shell word, or, when its bytes are not all UTF-8 or
// hold control characters (which a terminal shows alike, or breaks the
// line at), "$DIR" for the directory the message names quoted.
func bindFrom(dir string) string {
	if utf8.ValidString(dir) && strings.IndexFunc(dir, unicode.IsControl) < 0 {
		return shellWord(dir)
	}
	return `"$DIR" (DIR being the directory named above)`
}

// fstabField writes s as a field of /etc/fstab, whose fields are split at
// blanks: a space, tab, newline or backslash as its octal escape.
func fstabField(s string) string {
	return strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`).Replace(s)
}
