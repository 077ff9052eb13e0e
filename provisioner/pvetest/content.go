package pvetest

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	pathpkg "path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// The fake's storage content: a catalogue, what URLs serve, and files on
// storages, with PVE's download rules (keep a file whose checksum matches,
// refuse to overwrite one without a checksum, leave nothing after a
// mismatch) and guest creation from a template archive.

type contentStore struct {
	catalogue []pve.Appliance
	remote    map[string][]byte // URL → body
	files     map[string][]byte // volid → bytes
}

// AddAppliance puts a template in the catalogue, served at its location
// with its real sha512.
func (f *Fake) AddAppliance(name string, data []byte) pve.Appliance {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := sha512.Sum512(data)
	a := pve.Appliance{Template: name, Type: "lxc", Section: "system", Location: "http://download.proxmox.com/images/system/" + name,
		SHA512: hex.EncodeToString(sum[:]), OS: strings.SplitN(name, "_", 2)[0]}
	f.store.catalogue = append(f.store.catalogue, a)
	f.serveLocked(a.Location, data)
	return a
}

// Serve makes url answer with data.
func (f *Fake) Serve(url string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serveLocked(url, data)
}

func (f *Fake) serveLocked(url string, data []byte) {
	if f.store.remote == nil {
		f.store.remote = map[string][]byte{}
	}
	f.store.remote[url] = append([]byte(nil), data...)
}

// PutFile puts a file volume ("local:vztmpl/x.tar.zst") on its storage.
func (f *Fake) PutFile(volid string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putLocked(volid, data)
}

func (f *Fake) putLocked(volid string, data []byte) {
	if f.store.files == nil {
		f.store.files = map[string][]byte{}
	}
	f.store.files[volid] = append([]byte(nil), data...)
}

// File is a file volume's bytes.
func (f *Fake) File(volid string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.store.files[volid]
	return b, ok
}

func (c contentStore) volumes(storage string) []pve.Volume {
	var out []pve.Volume
	for _, volid := range sortedKeys(c.files) {
		sid, volname, _ := strings.Cut(volid, ":")
		if sid != storage {
			continue
		}
		content, _, _ := strings.Cut(volname, "/")
		out = append(out, pve.Volume{VolID: volid, Content: content, Size: int64(len(c.files[volid])), Format: formatOf(volname)})
	}
	return out
}

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func formatOf(name string) string {
	if i := strings.Index(name, ".tar."); i >= 0 {
		return "t" + name[i+len(".tar."):]
	}
	return strings.TrimPrefix(pathpkg.Ext(name), ".")
}

func (f *Fake) Appliances(ctx context.Context, node string) ([]pve.Appliance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Appliances", pve.GuestRef{}, node); err != nil {
		return nil, err
	}
	return append([]pve.Appliance(nil), f.store.catalogue...), nil
}

func hasher(algorithm string) hash.Hash {
	switch algorithm {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha224":
		return sha256.New224()
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

func digestOf(algorithm string, b []byte) string {
	h := hasher(algorithm)
	if h == nil {
		return ""
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// download is pve-common's download_file_from_url against the fake's
// remote: the task's log lines and exit status.
func (f *Fake) download(volid, url string, sum pve.Checksum) (log []string, exit string) {
	if have, ok := f.store.files[volid]; ok {
		if sum.IsZero() {
			return nil, fmt.Sprintf("refusing to override existing file '%s'", volid)
		}
		if got := digestOf(sum.Algorithm, have); !strings.EqualFold(got, sum.Hex) {
			return []string{"calculating checksum of existing file..."}, fmt.Sprintf("checksum mismatch: got '%s' != expect '%s', aborting", got, sum.Hex)
		}
		return []string{"calculating checksum of existing file...OK, got correct file already, no need to download"}, ""
	}
	data, ok := f.store.remote[url]
	if !ok {
		return nil, "download failed: 404 Not Found"
	}
	if !sum.IsZero() {
		if got := digestOf(sum.Algorithm, data); !strings.EqualFold(got, sum.Hex) {
			return []string{"calculating checksum..."}, fmt.Sprintf("checksum mismatch: got '%s' != expect '%s'", got, sum.Hex)
		}
		log = append(log, "calculating checksum...OK, checksum verified")
	}
	f.putLocked(volid, data)
	return append(log, fmt.Sprintf("download of '%s' to '%s' finished", url, volid)), ""
}

// fileTask is a download-like task: it ends in exit ("" is OK).
func (f *Fake) fileTask(node, typ, id string, log []string, exit string) string {
	if exit != "" {
		f.taskFails[typ] = append([]string{exit}, f.taskFails[typ]...)
	}
	upid, _ := f.startTask(node, typ, id, log...)
	return upid
}

func (f *Fake) DownloadAppliance(ctx context.Context, node, storage, template string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("DownloadAppliance", pve.GuestRef{}, storage+" "+template)
	if before != nil {
		return "", before
	}
	for _, a := range f.store.catalogue {
		if a.Template == template {
			log, exit := f.download(storage+":vztmpl/"+template, a.Location, a.Checksum())
			return answer(f.fileTask(node, "download", template, log, exit), after)
		}
	}
	return "", &pve.APIError{Method: "POST", Path: "/nodes/" + node + "/aplinfo", Status: 400, Message: "Parameter verification failed.",
		Errors: map[string]string{"template": "no such template"}}
}

func (f *Fake) DownloadURL(ctx context.Context, node, storage string, o pve.DownloadOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("DownloadURL", pve.GuestRef{}, storage+" "+o.Filename)
	if before != nil {
		return "", before
	}
	log, exit := f.download(storage+":"+o.Content+"/"+o.Filename, o.URL, o.Checksum)
	return answer(f.fileTask(node, "download", o.Filename, log, exit), after)
}

func (f *Fake) UploadFile(ctx context.Context, node, storage string, o pve.UploadOptions) (string, error) {
	data, err := io.ReadAll(io.LimitReader(o.Body, o.Size))
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("UploadFile", pve.GuestRef{}, storage+" "+o.Filename)
	if before != nil {
		return "", before
	}
	exit := ""
	if !o.Checksum.IsZero() {
		if got := digestOf(o.Checksum.Algorithm, data); !strings.EqualFold(got, o.Checksum.Hex) {
			exit = fmt.Sprintf("checksum mismatch: got '%s' != expect '%s'", got, o.Checksum.Hex)
		}
	}
	if exit == "" {
		f.putLocked(storage+":"+o.Content+"/"+o.Filename, data)
	}
	return answer(f.fileTask(node, "imgcopy", "", nil, exit), after)
}

func (f *Fake) DeleteVolume(ctx context.Context, node, volid string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("DeleteVolume", pve.GuestRef{}, volid)
	if before != nil {
		return "", before
	}
	if _, ok := f.store.files[volid]; !ok {
		return "", &pve.APIError{Method: "DELETE", Path: "/nodes/" + node + "/storage/content", Status: 500, Message: fmt.Sprintf("volume '%s' does not exist", volid)}
	}
	delete(f.store.files, volid)
	return answer(f.fileTask(node, "imgdel", "", nil, ""), after)
}

// createOnly are create parameters that never reach the config.
var createOnly = map[string]bool{"ostemplate": true, "password": true, "ssh-public-keys": true, "storage": true, "start": true,
	"unprivileged": true, "pool": true}

var newDisk = regexp.MustCompile(`^([a-z][a-z0-9._-]*):(\d+(?:\.\d+)?)$`)

func (f *Fake) CreateGuest(ctx context.Context, g pve.GuestRef, params map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "password" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	before, after := f.enter("CreateGuest", g, strings.Join(keys, ","))
	if before != nil {
		return "", before
	}
	if _, taken := f.guests[g.VMID]; taken {
		return "", &pve.APIError{Method: "POST", Path: "/nodes/" + g.Node + "/" + string(g.Kind), Status: 500,
			Message: fmt.Sprintf("%s %d already exists on node '%s'", g.Kind.Noun(), g.VMID, g.Node)}
	}
	typ := "vzcreate"
	if g.Kind == pve.QEMU {
		typ = "qmcreate"
	}
	if tmpl := params["ostemplate"]; g.Kind == pve.LXC {
		if _, ok := f.store.files[tmpl]; !ok {
			return answer(f.fileTask(g.Node, typ, strconv.Itoa(g.VMID), nil, fmt.Sprintf("unable to create CT %d - can't find file '%s'", g.VMID, tmpl)), after)
		}
	}
	cfg := map[string]string{}
	for k, v := range params {
		if !createOnly[k] {
			cfg[k] = v
		}
	}
	if g.Kind == pve.LXC {
		if params["unprivileged"] != "0" {
			cfg["unprivileged"] = "1" // PVE 9's default, as the fake's version
		}
		if m := newDisk.FindStringSubmatch(cfg["rootfs"]); m != nil {
			cfg["rootfs"] = fmt.Sprintf("%s:subvol-%d-disk-0,size=%sG", m[1], g.VMID, m[2])
		}
		for k, v := range cfg {
			n, err := strconv.Atoi(strings.TrimPrefix(k, "net"))
			if !strings.HasPrefix(k, "net") || err != nil {
				continue
			}
			if !strings.Contains(v, "hwaddr=") {
				v += fmt.Sprintf(",hwaddr=BC:24:11:%02X:%02X:%02X", g.VMID>>8&0xff, g.VMID&0xff, n)
			}
			if !strings.Contains(v, "type=") {
				v += ",type=veth"
			}
			cfg[k] = v
		}
		if cfg["ostype"] == "" {
			_, name, _ := strings.Cut(params["ostemplate"], "/")
			cfg["ostype"] = strings.SplitN(name, "-", 2)[0]
		}
		cfg["arch"] = "amd64"
	}
	if g.Kind == pve.QEMU {
		allocateVMDisks(g.VMID, cfg)
	}
	upid, ok := f.startTask(g.Node, typ, strconv.Itoa(g.VMID))
	if ok {
		status := "stopped"
		if params["start"] == "1" {
			status = "running"
		}
		f.guests[g.VMID] = &Guest{Kind: g.Kind, Node: g.Node, VMID: g.VMID, Config: cfg, Status: status, Files: map[string][]byte{}}
	}
	return answer(upid, after)
}

var (
	vmDrive   = regexp.MustCompile(`^(ide|sata|scsi|virtio|efidisk)\d+$`)
	vmNewDisk = regexp.MustCompile(`^([a-z][a-z0-9._-]*):(\d+(?:\.\d+)?)(,.*)?$`)
)

// allocateVMDisks does what PVE's create does with a VM's disk specs: a
// new disk (STORAGE:SIZE, or STORAGE:0,import-from=…, 2 GiB) becomes
// vm-<vmid>-disk-N with its size, the cloud-init drive (STORAGE:cloudinit)
// vm-<vmid>-cloudinit as a CD-ROM; each card gets a MAC.
func allocateVMDisks(vmid int, cfg map[string]string) {
	n := 0
	for _, k := range sortedConfigKeys(cfg) {
		v := cfg[k]
		switch {
		case vmDrive.MatchString(k) && strings.HasSuffix(v, ":cloudinit"):
			cfg[k] = fmt.Sprintf("%s:vm-%d-cloudinit,media=cdrom", strings.TrimSuffix(v, ":cloudinit"), vmid)
		case vmDrive.MatchString(k) && vmNewDisk.MatchString(v):
			m := vmNewDisk.FindStringSubmatch(v)
			size := m[2] + "G"
			var opts []string
			for _, o := range strings.Split(strings.TrimPrefix(m[3], ","), ",") {
				if strings.HasPrefix(o, "import-from=") {
					size = "2G"
				} else if o != "" {
					opts = append(opts, o)
				}
			}
			if k == "efidisk0" {
				size = "1M"
			}
			cfg[k] = fmt.Sprintf("%s:vm-%d-disk-%d,%s", m[1], vmid, n, strings.Join(append(opts, "size="+size), ","))
			n++
		case strings.HasPrefix(k, "net") && !strings.Contains(strings.SplitN(v, ",", 2)[0], "="):
			cfg[k] = withVMMAC(v, vmid, strings.TrimPrefix(k, "net"))
		}
	}
}

// withVMMAC gives a VM's card (model[=MAC],…) the fake's MAC for the
// VM's card n.
func withVMMAC(v string, vmid int, n string) string {
	first, rest, _ := strings.Cut(v, ",")
	model, _, _ := strings.Cut(first, "=")
	return fmt.Sprintf("%s=BC:24:11:%02X:%02X:%s0,%s", model, vmid>>8&0xff, vmid&0xff, n, rest)
}

func sortedConfigKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
