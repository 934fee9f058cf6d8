/*
 * The local backend's job supervisor and sandbox in C: `ms-supervisor <job dir> <kill grace s>`.
 *
 * It does for one local job exactly what local_runner.py's supervisor and sandbox_launch.py's
 * Sandbox do (those stay the fallback where no C compiler is found, and the Slurm path), at a
 * fraction of their CPU: no interpreter to start or fork, no copy-on-write faults of a large
 * heap. The local backend's zygote starts it with posix_spawn (a vfork), in its own session,
 * output to /dev/null (its own troubles go to the job folder's runner.log). The steps, their order and the reasons for them follow
 * the Python code; see it and docs/security.md.
 *
 * Its inputs, written by the agent next to command.json and sandbox.json:
 *   command.argv  "plain" or "sandbox", then the job's argv; each string NUL-terminated;
 *   sandbox.kv    (sandboxed jobs) the policy as NUL-terminated key, value, key, value...
 *                 (hide, writable and env repeat their key, env as NAME=value).
 * It reads `limit` (re-read every second) and `cancel`, and writes started.json, result.json,
 * the sandbox's report, job.out and job.err, as the Python supervisor does.
 *
 * Standard C and Linux system calls only; every call's result is checked. Built by the
 * package (csupervisor.py) with the system's cc.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Exit code of a job whose sandbox could not be set up (as the shell's "cannot execute"). */
#define SETUP_FAILED 126
/* Longest sleep between two looks at the cancel and limit files. */
#define POLL_S 1.0
/* Longest wait for killed processes to leave the job's cgroup before it is removed. */
#define DESTROY_WAIT_S 10.0
/* Largest input file read (command.argv, sandbox.kv): above Linux's own argument limit. */
#define MAX_INPUT_BYTES (4 << 20)
#define CGROUP_ROOT "/sys/fs/cgroup"
/* Stands, in a container runtime's command, for the job's memory cgroup (see runtime.py). */
#define JOB_CGROUP "@JOB_CGROUP@"
#define MAX_LIST 1024

/* ------------------------------------------------------------------------------- helpers */

/* An error in words: what failed, and the system's reason. */
static char errbuf[2 * PATH_MAX];

static int fail(const char *fmt, ...) {
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    if (saved && n >= 0 && (size_t)n < sizeof errbuf)
        snprintf(errbuf + n, sizeof errbuf - (size_t)n, ": %s", strerror(saved));
    errno = saved;
    return -1;
}

/* dst = a + b (+ c), or -1 when it does not fit. */
static int join(char *dst, size_t size, const char *a, const char *b, const char *c) {
    int n = snprintf(dst, size, "%s%s%s", a, b, c ? c : "");
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return fail("path %s%s%s", a, b, c ? c : "");
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes `text` to an existing file (cgroup and /proc files), as Python's write_text. */
static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return fail("write %s", path);
    if (write_all(fd, text, strlen(text)) < 0) {
        fail("write %s", path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return fail("write %s", path);
    return 0;
}

/* Writes `text` to `path` atomically (a .tmp beside it, then a rename). */
static int write_atomic(const char *path, const char *text) {
    char tmp[PATH_MAX];
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    int n = snprintf(tmp, sizeof tmp, "%.*s.tmp", (int)stem, path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return fail("path %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail("write %s", tmp);
    if (write_all(fd, text, strlen(text)) < 0) {
        fail("write %s", tmp);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return fail("write %s", tmp);
    if (rename(tmp, path) < 0)
        return fail("rename %s", path);
    return 0;
}

/* The whole of a file of at most `max` bytes, NUL-terminated (its length in *len); NULL on
 * error, with errno set. */
static char *read_file(const char *path, size_t max, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return NULL;
    }
    for (;;) {
        if (used == cap) {
            if (cap >= max) {
                free(buf);
                close(fd);
                errno = EFBIG;
                return NULL;
            }
            cap = cap * 2 > max ? max : cap * 2;
            char *more = realloc(buf, cap + 1);
            if (!more) {
                free(buf);
                close(fd);
                return NULL;
            }
            buf = more;
        }
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            free(buf);
            close(fd);
            errno = saved;
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    if (len)
        *len = used;
    return buf;
}

/* The NUL-terminated strings of a buffer, as a malloc'd NULL-terminated array (their count in
 * *count); NULL when the buffer does not end with a NUL (or out of memory). */
static char **split_nul(char *buf, size_t len, int *count) {
    if (len == 0 || buf[len - 1] != '\0') {
        errno = EINVAL;
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == '\0';
    char **out = malloc((n + 1) * sizeof *out);
    if (!out)
        return NULL;
    n = 0;
    for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
        out[n++] = buf + i;
    out[n] = NULL;
    *count = (int)n;
    return out;
}

static int parse_long(const char *text, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int exit_code_of(int status) {
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Every signal back to its default and none blocked: what a job starts with. */
static void default_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL); /* fails only for signals glibc keeps: nothing to do */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The supervisor's own troubles go to runner.log in the job folder, opened only when there is
 * one: its output is /dev/null, since each file made costs a job an inode. */
static const char *job_folder = ".";

static void log_error(void) {
    char path[PATH_MAX];
    if (join(path, sizeof path, job_folder, "/runner.log", NULL) < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return; /* nowhere to say it */
    dprintf(fd, "supervisor: %s\n", errbuf);
    close(fd);
}

/* ------------------------------------------------------------------------------ the policy */

struct policy {
    const char *name, *folder, *work, *report;
    long uid, gid, cpus, mem_mb, max_processes, network, runtime_as_root;
    const char *hide[MAX_LIST + 1], *writable[MAX_LIST + 1];
    char *env[MAX_LIST + 1];
    int n_hide, n_writable, n_env;
};

static int add(const char **list, int *n, const char *value, const char *key) {
    if (*n >= MAX_LIST) {
        errno = E2BIG;
        return fail("policy: too many %s entries", key);
    }
    list[(*n)++] = value;
    list[*n] = NULL;
    return 0;
}

/* Reads sandbox.kv; every key known, every required one present (fails closed). */
static int read_policy(const char *path, struct policy *p) {
    size_t len;
    char *buf = read_file(path, MAX_INPUT_BYTES, &len);
    if (!buf)
        return fail("read %s", path);
    int n = 0;
    char **items = split_nul(buf, len, &n);
    if (!items || n % 2) {
        errno = EINVAL;
        return fail("%s: not NUL-separated key/value pairs", path);
    }
    memset(p, 0, sizeof *p);
    p->uid = p->gid = p->cpus = p->mem_mb = p->max_processes = p->network = -1;
    for (int i = 0; i < n; i += 2) {
        const char *k = items[i], *v = items[i + 1];
        long *num = NULL, hi = INT_MAX;
        if (!strcmp(k, "name"))
            p->name = v;
        else if (!strcmp(k, "folder"))
            p->folder = v;
        else if (!strcmp(k, "work"))
            p->work = v;
        else if (!strcmp(k, "report"))
            p->report = v;
        else if (!strcmp(k, "hide")) {
            if (add(p->hide, &p->n_hide, v, k) < 0)
                return -1;
        } else if (!strcmp(k, "writable")) {
            if (add(p->writable, &p->n_writable, v, k) < 0)
                return -1;
        } else if (!strcmp(k, "env")) {
            if (!strchr(v, '=')) {
                errno = EINVAL;
                return fail("policy: env entry %s is not NAME=value", v);
            }
            if (add((const char **)p->env, &p->n_env, v, k) < 0)
                return -1;
        } else if (!strcmp(k, "uid"))
            num = &p->uid;
        else if (!strcmp(k, "gid"))
            num = &p->gid;
        else if (!strcmp(k, "cpus"))
            num = &p->cpus;
        else if (!strcmp(k, "mem_mb"))
            num = &p->mem_mb, hi = LONG_MAX >> 20;
        else if (!strcmp(k, "max_processes"))
            num = &p->max_processes;
        else if (!strcmp(k, "network"))
            num = &p->network, hi = 1;
        else if (!strcmp(k, "runtime_as_root"))
            num = &p->runtime_as_root, hi = 1;
        else {
            errno = EINVAL;
            return fail("policy: unknown key %s", k);
        }
        if (num && parse_long(v, 0, hi, num) < 0) {
            errno = EINVAL;
            return fail("policy: bad %s %s", k, v);
        }
    }
    if (!p->name || !p->folder || !p->work || !p->report || p->uid < 0 || p->gid < 0 ||
        p->cpus < 0 || p->mem_mb < 0 || p->max_processes < 0 || p->network < 0) {
        errno = EINVAL;
        return fail("policy %s: a required key is missing", path);
    }
    return 0;
}

/* --------------------------------------------------------------------------------- cgroups */

enum { MEMORY, PIDS, CPU, N_CONTROLLERS };
static const char *const CONTROLLERS[N_CONTROLLERS] = {"memory", "pids", "cpu"};

/* The job's own cgroup, nested under the supervisor's, in each controller it needs. */
struct cgroups {
    int v2;
    char dirs[N_CONTROLLERS][PATH_MAX];
    int distinct[N_CONTROLLERS]; /* which of dirs are not a repeat of an earlier one */
};

static int cgroups_init(struct cgroups *g, const char *name) {
    struct stat st;
    memset(g, 0, sizeof *g);
    g->v2 = stat(CGROUP_ROOT "/cgroup.controllers", &st) == 0;
    size_t len;
    char *text = read_file("/proc/self/cgroup", 1 << 16, &len);
    if (!text)
        return fail("read /proc/self/cgroup");
    char suffix[PATH_MAX];
    int rc = 0;
    for (char *line = strtok(text, "\n"); line && rc == 0; line = strtok(NULL, "\n")) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        char *controllers = c1 + 1, *rel = c2 + 1;
        while (*rel == '/')
            rel++;
        if ((rc = join(suffix, sizeof suffix, rel, *rel ? "/" : "", name)) < 0)
            break;
        if (g->v2 && *controllers == '\0') {
            for (int i = 0; i < N_CONTROLLERS && rc == 0; i++)
                rc = join(g->dirs[i], PATH_MAX, CGROUP_ROOT "/", suffix, NULL);
            continue;
        }
        if (g->v2)
            continue;
        for (char *save, *c = strtok_r(controllers, ",", &save); c && rc == 0;
             c = strtok_r(NULL, ",", &save))
            for (int i = 0; i < N_CONTROLLERS && rc == 0; i++)
                if (!strcmp(c, CONTROLLERS[i])) {
                    char base[64];
                    snprintf(base, sizeof base, CGROUP_ROOT "/%s/", c);
                    rc = join(g->dirs[i], PATH_MAX, base, suffix, NULL);
                }
    }
    free(text);
    if (rc < 0)
        return -1;
    for (int i = 0; i < N_CONTROLLERS; i++) {
        g->distinct[i] = 1;
        for (int j = 0; j < i; j++)
            if (!strcmp(g->dirs[i], g->dirs[j]))
                g->distinct[i] = 0;
    }
    return 0;
}

static int cg_write(const char *dir, const char *file, const char *value) {
    char path[PATH_MAX];
    if (join(path, sizeof path, dir, "/", file) < 0)
        return -1;
    return write_file(path, value);
}

static int cgroups_create(struct cgroups *g, long mem_mb, long cpus, long max_processes) {
    char missing[64] = "";
    static const int ALPHABETICAL[N_CONTROLLERS] = {CPU, MEMORY, PIDS};
    for (int k = 0; k < N_CONTROLLERS; k++)
        if (!g->dirs[ALPHABETICAL[k]][0]) {
            strcat(missing, missing[0] ? ", " : "");
            strcat(missing, CONTROLLERS[ALPHABETICAL[k]]); /* at most 17 characters: fits */
        }
    if (missing[0]) {
        errno = 0;
        return fail("no cgroup controller for %s", missing);
    }
    for (int i = 0; i < N_CONTROLLERS; i++)
        if (g->distinct[i] && mkdir(g->dirs[i], 0755) < 0 && errno != EEXIST)
            return fail("mkdir %s", g->dirs[i]);
    char mem[32], procs[32], quota[48];
    snprintf(mem, sizeof mem, "%ld", mem_mb << 20);
    snprintf(procs, sizeof procs, "%ld", max_processes);
    if (g->v2) {
        const char *d = g->dirs[MEMORY];
        snprintf(quota, sizeof quota, "%ld 100000", cpus * 100000);
        if (cg_write(d, "memory.max", mem) < 0)
            return -1;
        cg_write(d, "memory.swap.max", "0"); /* only where swap is accounted */
        if (cg_write(d, "pids.max", procs) < 0 || cg_write(d, "cpu.max", quota) < 0)
            return -1;
        return 0;
    }
    const char *m = g->dirs[MEMORY];
    if (cg_write(m, "memory.limit_in_bytes", mem) < 0)
        return -1;
    cg_write(m, "memory.memsw.limit_in_bytes", mem); /* only where swap is accounted */
    if (cg_write(g->dirs[PIDS], "pids.max", procs) < 0)
        return -1;
    snprintf(quota, sizeof quota, "%ld", cpus * 100000);
    if (cg_write(g->dirs[CPU], "cpu.cfs_period_us", "100000") < 0 ||
        cg_write(g->dirs[CPU], "cpu.cfs_quota_us", quota) < 0)
        return -1;
    return 0;
}

/* The job's memory cgroup, as a path from its hierarchy's root. */
static const char *cgroups_memory_path(const struct cgroups *g) {
    const char *d = g->dirs[MEMORY];
    size_t skip = strlen(CGROUP_ROOT);
    if (!g->v2)
        skip += strlen("/memory");
    return d + skip;
}

/* Moves the calling process in; its children follow. */
static int cgroups_enter(const struct cgroups *g) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int i = 0; i < N_CONTROLLERS; i++)
        if (g->distinct[i] && cg_write(g->dirs[i], "cgroup.procs", pid) < 0)
            return -1;
    return 0;
}

/* The value of `key` in a "key value" file, 0 when absent or unreadable. */
static long counter(const char *dir, const char *file, const char *key) {
    char path[PATH_MAX];
    if (join(path, sizeof path, dir, "/", file) < 0)
        return 0;
    char *text = read_file(path, 1 << 16, NULL);
    if (!text)
        return 0;
    long value = 0;
    size_t klen = strlen(key);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, key, klen) && line[klen] == ' ') {
            parse_long(line + klen + 1, 0, LONG_MAX, &value);
            break;
        }
    free(text);
    return value;
}

static void rmdir_quietly(const char *dir, const char *leaf) {
    char path[PATH_MAX];
    if (join(path, sizeof path, dir, leaf, NULL) == 0)
        rmdir(path); /* absent or still busy: nothing more to do */
}

/* Kills what is left in it, waits for it to empty, and removes it. `runtime`: a container
 * runtime ran in it (see below). Each is removed first, and looked into only when that fails:
 * the job's init has been reaped by now, and with it every process of its namespace, so most
 * are empty already (the Python supervisor reads every cgroup.procs first). */
static void cgroups_destroy(const struct cgroups *g, int runtime) {
    double deadline = now_s() + DESTROY_WAIT_S;
    for (int i = 0; i < N_CONTROLLERS; i++) {
        if (!g->distinct[i] || !g->dirs[i][0] || rmdir(g->dirs[i]) == 0 || errno == ENOENT)
            continue;
        char path[PATH_MAX];
        if (join(path, sizeof path, g->dirs[i], "/cgroup.procs", NULL) < 0)
            continue;
        while (now_s() < deadline) {
            char *pids = read_file(path, 1 << 20, NULL);
            if (!pids)
                break;
            int any = 0;
            for (char *tok = strtok(pids, "\n"); tok; tok = strtok(NULL, "\n")) {
                long pid;
                if (parse_long(tok, 1, INT_MAX, &pid) == 0) {
                    kill((pid_t)pid, SIGKILL); /* gone meanwhile: fine */
                    any = 1;
                }
            }
            free(pids);
            if (!any)
                break;
            struct timespec pause = {0, 50 * 1000 * 1000};
            nanosleep(&pause, NULL); /* a killed process leaves its cgroup once it has exited */
        }
    }
    /* A container runtime given the memory cgroup as parent made that path in every hierarchy
     * (v1), and a `conmon` cgroup under it: those go too. Only a runtime makes them (a job
     * user cannot), so only its jobs pay for the look. */
    if (runtime && !g->v2) {
        DIR *root = opendir(CGROUP_ROOT);
        if (root) {
            const char *mp = cgroups_memory_path(g);
            struct dirent *e;
            while ((e = readdir(root))) {
                if (e->d_name[0] == '.')
                    continue;
                char dir[PATH_MAX];
                int n = snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s", e->d_name, mp);
                if (n < 0 || (size_t)n >= sizeof dir)
                    continue;
                rmdir_quietly(dir, "/conmon");
                rmdir_quietly(dir, "");
            }
            closedir(root);
        }
    }
    for (int i = 0; i < N_CONTROLLERS; i++)
        if (g->distinct[i] && g->dirs[i][0]) {
            if (runtime)
                rmdir_quietly(g->dirs[i], "/conmon");
            rmdir_quietly(g->dirs[i], ""); /* removed above already: ENOENT */
        }
}

/* -------------------------------------------------------------------- inside the namespace */

static int do_mount(const char *source, const char *target, const char *fstype,
                    unsigned long flags, const char *data) {
    if (mount(source, target, fstype, flags, data) < 0)
        return fail("mount %s", target);
    return 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int mkdirs(const char *path) {
    char buf[PATH_MAX];
    if (join(buf, sizeof buf, path, "", NULL) < 0)
        return -1;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return fail("mkdir %s", buf);
            if (c == '\0')
                break;
            *p = c;
        }
    }
    if (!is_dir(path)) {
        errno = ENOTDIR;
        return fail("mkdir %s", path);
    }
    return 0;
}

static int by_length(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strlen(x), ly = strlen(y);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x, y);
}

static int private_filesystem(struct policy *p) {
    if (do_mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    /* Handles on the job's own folder and on the other folders it may write (its output
     * folder, which the agent keeps with its own files), taken in this namespace before
     * anything is hidden: they are mounted back from them. */
    const char *paths[MAX_LIST + 1];
    int fds[MAX_LIST + 1], n = 0;
    size_t flen = strlen(p->folder);
    paths[n++] = p->folder;
    for (int i = 0; i < p->n_writable; i++) {
        const char *w = p->writable[i];
        if (!(strncmp(w, p->folder, flen) == 0 && w[flen] == '/'))
            paths[n++] = w;
    }
    for (int i = 0; i < n; i++) {
        fds[i] = open(paths[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fds[i] < 0)
            return fail("open %s", paths[i]);
    }
    if (do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -1;
    static const char *const TMP[] = {"/tmp", "/var/tmp", "/dev/shm"};
    for (size_t i = 0; i < sizeof TMP / sizeof *TMP; i++)
        if (is_dir(TMP[i]) &&
            do_mount("tmpfs", TMP[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
            return -1;
    /* Shortest first: a path inside one already hidden is gone already. */
    qsort(p->hide, (size_t)p->n_hide, sizeof *p->hide, by_length);
    for (int i = 0; i < p->n_hide; i++) {
        struct stat st;
        const char *h = p->hide[i];
        if (stat(h, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (do_mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k") < 0)
                return -1;
        } else if (do_mount("/dev/null", h, NULL, MS_BIND, NULL) < 0)
            return -1;
    }
    for (int i = 0; i < n; i++) {
        char source[64];
        if (mkdirs(paths[i]) < 0)
            return -1;
        snprintf(source, sizeof source, "/proc/self/fd/%d", fds[i]);
        if (do_mount(source, paths[i], NULL, MS_BIND | MS_REC, NULL) < 0)
            return -1;
        close(fds[i]);
    }
    if (do_mount(p->work, p->work, NULL, MS_BIND, NULL) < 0)
        return -1;
    return do_mount("none", p->folder, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                    NULL);
}

static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return fail("socket");
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strcpy(req.ifr_name, "lo");
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &req) < 0)
        rc = fail("loopback flags");
    else {
        req.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &req) < 0)
            rc = fail("loopback up");
    }
    close(s);
    return rc;
}

static int become_job_user(const struct policy *p) {
    if (setgroups(0, NULL) < 0)
        return fail("setgroups");
    if (setresgid((gid_t)p->gid, (gid_t)p->gid, (gid_t)p->gid) < 0)
        return fail("setresgid %ld", p->gid);
    if (setresuid((uid_t)p->uid, (uid_t)p->uid, (uid_t)p->uid) < 0)
        return fail("setresuid %ld", p->uid);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail("no_new_privs");
    umask(077);
    if (chdir(p->work) < 0)
        return fail("chdir %s", p->work);
    return 0;
}

/* execve of argv[0] found on the PATH of `env` (not this process's), as Python's execvpe. */
static int exec_in_env(char **argv, char **env) {
    if (strchr(argv[0], '/')) {
        execve(argv[0], argv, env);
        return fail("exec %s", argv[0]);
    }
    const char *path = "/bin:/usr/bin";
    for (char **e = env; *e; e++)
        if (!strncmp(*e, "PATH=", 5))
            path = *e + 5;
    int saved = ENOENT;
    for (const char *dir = path;; dir = strchr(dir, ':') + 1) {
        size_t dlen = strcspn(dir, ":");
        char full[PATH_MAX];
        int n = snprintf(full, sizeof full, "%.*s/%s", (int)dlen, dir, argv[0]);
        if (n >= 0 && (size_t)n < sizeof full) {
            execve(full, argv, env);
            if (errno != ENOENT && errno != ENOTDIR && saved == ENOENT)
                saved = errno;
        }
        if (!dir[dlen])
            break;
    }
    errno = saved;
    return fail("exec %s", argv[0]);
}

/* A string with every JOB_CGROUP replaced by `by` (malloc'd; NULL when out of memory). */
static char *replace_all(const char *s, const char *by) {
    size_t plen = strlen(JOB_CGROUP), blen = strlen(by), count = 0;
    for (const char *q = strstr(s, JOB_CGROUP); q; q = strstr(q + plen, JOB_CGROUP))
        count++;
    char *out = malloc(strlen(s) + count * blen + 1), *w = out;
    if (!out)
        return NULL;
    for (const char *q; (q = strstr(s, JOB_CGROUP)); s = q + plen) {
        memcpy(w, s, (size_t)(q - s));
        w += q - s;
        memcpy(w, by, blen);
        w += blen;
    }
    strcpy(w, s);
    return out;
}

static void forward(int sig) {
    int saved = errno;
    kill(-1, sig); /* every process of the namespace but its init */
    errno = saved;
}

/* PID 1 of the job's namespace: sets it up, runs the job, reaps, passes signals on. */
static int init_main(struct policy *p, const struct cgroups *g, char **argv) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        fail("pdeathsig");
        dprintf(2, "sandbox: could not confine the job: %s\n", errbuf);
        return SETUP_FAILED;
    }
    /* In the job's cgroup from here on; the supervisor stays out, so that it outlives an
     * out-of-memory kill to report it. */
    int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!p->network)
        flags |= CLONE_NEWNET;
    if (cgroups_enter(g) < 0 || (unshare(flags) < 0 && fail("unshare") < 0) ||
        private_filesystem(p) < 0 || (!p->network && loopback_up() < 0)) {
        dprintf(2, "sandbox: could not confine the job: %s\n", errbuf);
        return SETUP_FAILED;
    }
    pid_t job = fork();
    if (job < 0) {
        fail("fork");
        dprintf(2, "sandbox: could not start the job: %s\n", errbuf);
        return SETUP_FAILED;
    }
    if (job == 0) {
        default_signals();
        /* The job, not its init, is the first the kernel kills when memory runs out. */
        int rc = write_file("/proc/self/oom_score_adj", "500");
        if (rc == 0 && p->runtime_as_root) {
            /* A container runtime: it starts the container as the job user itself. */
            if (chdir(p->work) < 0)
                rc = fail("chdir %s", p->work);
            for (char **a = argv; rc == 0 && *a; a++)
                if (strstr(*a, JOB_CGROUP) && !(*a = replace_all(*a, cgroups_memory_path(g))))
                    rc = fail("argv");
        } else if (rc == 0)
            rc = become_job_user(p);
        if (rc == 0)
            exec_in_env(argv, p->env);
        dprintf(2, "sandbox: could not start the job: %s\n", errbuf);
        _exit(SETUP_FAILED);
    }
    struct sigaction fw;
    memset(&fw, 0, sizeof fw);
    fw.sa_handler = forward;
    sigemptyset(&fw.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        if (sigaction(sigs[i], &fw, NULL) < 0) {
            kill(job, SIGKILL);
            fail("sigaction");
            dprintf(2, "sandbox: could not start the job: %s\n", errbuf);
            return SETUP_FAILED;
        }
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            return SETUP_FAILED; /* ECHILD: cannot happen while the job is unreaped */
        }
        if (pid == job)
            return exit_code_of(status);
    }
}

/* ------------------------------------------------------------------------------ the sandbox */

/* Makes the cgroup and forks the init (in a new PID namespace, its own session: a signal to
 * its process group reaches the whole job); the init's pid, or -1 with the reason in errbuf
 * (nothing left behind). */
static pid_t sandbox_start(struct policy *p, struct cgroups *g, char **argv, int out, int err,
                           const int *close_in_init) {
    if (cgroups_create(g, p->mem_mb, p->cpus, p->max_processes) < 0) {
        cgroups_destroy(g, 0);
        return -1;
    }
    /* The PID namespace takes effect for the children; the others are the init's own, so that
     * this process keeps the host's view (it writes the report there). */
    if (unshare(CLONE_NEWPID) < 0) {
        fail("unshare");
        cgroups_destroy(g, 0);
        return -1;
    }
    pid_t init = fork();
    if (init < 0) {
        fail("fork");
        cgroups_destroy(g, 0);
        return -1;
    }
    if (init > 0)
        return init;
    int code = SETUP_FAILED;
    signal(SIGTERM, SIG_DFL); /* until the init forwards it */
    for (const int *fd = close_in_init; *fd >= 0; fd++)
        close(*fd);
    int null = open("/dev/null", O_RDONLY);
    if (setsid() < 0 || null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
        fail("stdio");
        dprintf(err, "sandbox: could not start: %s\n", errbuf);
        _exit(code);
    }
    close(null);
    close(out);
    close(err);
    code = init_main(p, g, argv);
    _exit(code);
}

/* After the init's end: writes the report, removes the cgroup; the job's exit code. */
static int sandbox_finish(const struct policy *p, const struct cgroups *g, int status) {
    int code = exit_code_of(status);
    long oom = counter(g->dirs[MEMORY], g->v2 ? "memory.events" : "memory.oom_control", "oom_kill");
    long hits = counter(g->dirs[PIDS], "pids.events", "max");
    cgroups_destroy(g, (int)p->runtime_as_root);
    char report[256];
    snprintf(report, sizeof report,
             "{\"oom_kills\": %ld, \"pids_max_hits\": %ld, \"mem_mb\": %ld, \"exit_code\": %d}",
             oom, hits, p->mem_mb, code);
    if (write_atomic(p->report, report) < 0)
        log_error();
    return code;
}

/* ---------------------------------------------------------------------------- supervisor */

static volatile sig_atomic_t cancelled;
static int wake_w = -1;

static void on_term(int sig) {
    (void)sig;
    int saved = errno;
    cancelled = 1;
    char one = 1;
    if (write(wake_w, &one, 1) < 0) { /* full or closed: the flag is seen anyway */
    }
    errno = saved;
}

/* The limit in `limit` (total seconds from the start); `current` when missing or half-written. */
static double read_limit(double current) {
    char *text = read_file("limit", 64, NULL);
    if (!text)
        return current;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
        end++;
    int ok = !errno && end != text && *end == '\0' && !isnan(v);
    free(text);
    return ok ? v : current;
}

static void kill_group(pid_t pgid, int sig) {
    kill(-pgid, sig); /* ESRCH: gone already */
}

static int write_result(const char *state, int code, const char *reason) {
    char text[512];
    char quoted[300] = "null";
    if (reason)
        snprintf(quoted, sizeof quoted, "\"%s\"", reason); /* our own words: no quotes in them */
    snprintf(text, sizeof text,
             "{\"state\": \"%s\", \"exit_code\": %d, \"ended_at\": %.6f, \"reason\": %s}", state,
             code, now_s(), quoted);
    if (write_atomic("result.json", text) < 0) {
        log_error();
        return 1;
    }
    return 0;
}

static int setup_failed(int err_fd, const char *why) {
    if (err_fd >= 0)
        dprintf(err_fd, "sandbox: could not confine the job: %s\n", why);
    char reason[32];
    snprintf(reason, sizeof reason, "exit code %d", SETUP_FAILED);
    return write_result("FAILED", SETUP_FAILED, reason);
}

static int supervise(const char *job_dir, double grace_s) {
    /* Made before the SIGTERM handler that writes to it; close-on-exec, and closed by the
     * init, so that the job holds none of them. */
    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        fail("pipe");
        log_error();
        return 1;
    }
    wake_w = wake[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigset_t none;
    sigemptyset(&none);
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGHUP, &ign, NULL) < 0 ||
        sigaction(SIGINT, &ign, NULL) < 0 || sigaction(SIGCHLD, &dfl, NULL) < 0 ||
        sigprocmask(SIG_SETMASK, &none, NULL) < 0) {
        fail("signals");
        log_error();
        return 1;
    }
    if (chdir(job_dir) < 0) {
        fail("chdir %s", job_dir);
        log_error();
        return 1;
    }
    job_folder = ".";
    double limit = read_limit(INFINITY);
    int out = open("job.out", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    int err = open("job.err", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (out < 0 || err < 0) {
        fail("open job.out, job.err");
        log_error();
        return setup_failed(err, errbuf);
    }
    size_t len;
    char *command = read_file("command.argv", MAX_INPUT_BYTES, &len);
    int argc = 0;
    char **argv = command ? split_nul(command, len, &argc) : NULL;
    if (!argv || argc < 2) {
        if (!command)
            fail("read %s/command.argv", job_dir);
        else {
            errno = EINVAL;
            fail("%s/command.argv: not a mode and a NUL-separated command", job_dir);
        }
        return setup_failed(err, errbuf);
    }
    int sandboxed = !strcmp(argv[0], "sandbox");
    if (!sandboxed && strcmp(argv[0], "plain")) {
        errno = EINVAL;
        fail("%s/command.argv: unknown mode %s", job_dir, argv[0]);
        return setup_failed(err, errbuf);
    }
    char **job_argv = argv + 1;

    static struct policy policy;
    static struct cgroups groups;
    pid_t pid;
    if (sandboxed) {
        char name[NAME_MAX + 1];
        if (read_policy("sandbox.kv", &policy) < 0)
            return setup_failed(err, errbuf);
        int n = snprintf(name, sizeof name, "ms-%s-%d", policy.name, (int)getpid());
        if (n < 0 || (size_t)n >= sizeof name || strchr(policy.name, '/')) {
            errno = EINVAL;
            fail("job name %s", policy.name);
            return setup_failed(err, errbuf);
        }
        if (cgroups_init(&groups, name) < 0)
            return setup_failed(err, errbuf);
        int close_in_init[] = {wake[0], wake[1], -1};
        pid = sandbox_start(&policy, &groups, job_argv, out, err, close_in_init);
        if (pid < 0)
            return setup_failed(err, errbuf);
    } else {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t all;
        sigfillset(&all);
        int rc = posix_spawn_file_actions_init(&fa);
        if (!rc)
            rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, out, 1);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, err, 2);
        if (!rc)
            rc = posix_spawnattr_init(&attr);
        /* Its own session (pgid == pid); every signal at its default, none blocked. */
        if (!rc)
            rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF |
                                                     POSIX_SPAWN_SETSIGMASK);
        if (!rc)
            rc = posix_spawnattr_setsigdefault(&attr, &all);
        if (!rc)
            rc = posix_spawnattr_setsigmask(&attr, &none);
        if (!rc)
            rc = posix_spawnp(&pid, job_argv[0], &fa, &attr, job_argv, environ);
        if (rc) {
            errno = rc;
            fail("start %s", job_argv[0]);
            return setup_failed(err, errbuf);
        }
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    close(out);
    close(err);
    double started = now_s();
    char text[128];
    snprintf(text, sizeof text, "{\"pid\": %d, \"started_at\": %.6f}", (int)pid, started);
    if (write_atomic("started.json", text) < 0)
        log_error();
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd fds[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = wake[0], .events = POLLIN}};

    const char *state = NULL;
    char reason[128] = "";
    int have_kill_at = 0, status = 0;
    double kill_at = 0;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (done < 0 && errno != EINTR) {
            fail("waitpid %d", (int)pid);
            log_error();
            return 1;
        }
        double now = now_s(), wait_s = POLL_S;
        if (!state) {
            if (cancelled || access("cancel", F_OK) == 0) {
                state = "CANCELLED";
                snprintf(reason, sizeof reason, "cancelled");
            } else {
                limit = read_limit(limit);
                if (now - started >= limit) {
                    state = "TIMEOUT";
                    snprintf(reason, sizeof reason, "time limit of %g s reached", limit);
                }
                if (started + limit - now < wait_s)
                    wait_s = started + limit - now;
            }
            if (state) {
                kill_group(pid, SIGTERM);
                kill_at = now + grace_s;
                have_kill_at = 1;
                wait_s = grace_s;
            }
        } else if (have_kill_at) {
            if (now >= kill_at) {
                kill_group(pid, SIGKILL);
                have_kill_at = 0;
            } else
                wait_s = kill_at - now;
        }
        double ms = wait_s * 1000 + 1;
        int timeout = ms < 1 ? 1 : ms > INT_MAX ? INT_MAX : (int)ms;
        /* Without a pidfd (an old kernel), the poll is a plain sleep of at most POLL_S. */
        if (poll(pidfd >= 0 ? fds : fds + 1, pidfd >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) {
            fail("poll");
            log_error();
        }
        char drain[512];
        while (read(wake[0], drain, sizeof drain) > 0) {
        }
    }
    /* The main process is gone; whatever it left running in its group goes with it, as in
     * Slurm. */
    kill_group(pid, SIGKILL);
    int code = sandboxed ? sandbox_finish(&policy, &groups, status) : exit_code_of(status);
    if (!state) {
        state = code == 0 ? "COMPLETED" : "FAILED";
        if (code)
            snprintf(reason, sizeof reason, "exit code %d", code);
    }
    return write_result(state, code, reason[0] ? reason : NULL);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        dprintf(2, "usage: %s <job dir> <kill grace s>\n", argv[0]);
        return 2;
    }
    char *end;
    double grace = strtod(argv[2], &end);
    if (*end || end == argv[2] || !(grace >= 0) || isinf(grace)) {
        dprintf(2, "supervisor: bad kill grace %s (seconds expected)\n", argv[2]);
        return 2;
    }
    job_folder = argv[1];
    return supervise(argv[1], grace);
}
