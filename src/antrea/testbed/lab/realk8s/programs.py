"""The two programs the real lab's local images run, as C sources compiled statically here.

No registry is reachable, so the pause image (the pod sandbox) and the workload image are built
on the spot from these sources (``gcc -static``, well under a second each) plus Debian's static
busybox for a shell in workload pods (`kubectl exec`).

``agnhost`` answers the subset of upstream's ``agnhost serve-hostname`` that the lab's pod
model uses (``--tcp``/``--udp``/``--http`` and ``--port``), the way the embedded lab's workload
does (`antrea.testbed.lab.workload`): TCP writes the pod's hostname and closes, UDP echoes each
datagram (what `antrea lab probe` checks), HTTP answers 200 with the hostname.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PAUSE_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction a = {0}, b = {0};
    a.sa_handler = die; sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL);
    b.sa_handler = reap; b.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &b, NULL);
    for (;;) pause();
}
"""

AGNHOST_C = r"""
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener(int type, int port) {
    int fd = socket(AF_INET, type, 0), one = 1;
    struct sockaddr_in a = {0};
    if (fd < 0) { perror("socket"); exit(1); }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = INADDR_ANY;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(fd, 128) < 0) { perror("listen"); exit(1); }
    return fd;
}

static int on(const char *arg, const char *name) {
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return -1;
    if (arg[n] == 0) return 1;
    if (arg[n] == '=') return strcmp(arg + n + 1, "false") != 0;
    return -1;
}

int main(int argc, char **argv) {
    int tcp = 0, udp = 0, http = 1, port = 9376, v;
    char host[256] = "", buf[65536];
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        if ((v = on(argv[i], "--tcp")) >= 0) tcp = v;
        else if ((v = on(argv[i], "--udp")) >= 0) udp = v;
        else if ((v = on(argv[i], "--http")) >= 0) http = v;
        else if (strncmp(argv[i], "--port=", 7) == 0) port = atoi(argv[i] + 7);
    }
    gethostname(host, sizeof host - 2);
    if (udp) {
        int fd = listener(SOCK_DGRAM, port);
        for (;;) {
            struct sockaddr_in peer; socklen_t len = sizeof peer;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n >= 0) sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
        }
    }
    if (!tcp && !http) return 0;
    int fd = listener(SOCK_STREAM, port);
    char reply[512];
    if (tcp) snprintf(reply, sizeof reply, "%s\n", host);
    else snprintf(reply, sizeof reply,
                  "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                  strlen(host), host);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        if (!tcp) { (void)!read(c, buf, sizeof buf); }
        (void)!write(c, reply, strlen(reply));
        close(c);
    }
}
"""


def compile_static(source: str, out: Path) -> Path:
    """``gcc -static`` ``source`` into ``out``; raise with the compiler's message on failure."""
    src = out.with_suffix(".c")
    src.write_text(source)
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(out), str(src)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"gcc {src}: {proc.stderr.strip()}")
    return out
