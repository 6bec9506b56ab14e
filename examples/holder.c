/* holder.c: creates a set and hands its fd to programs of the same user.
 * cc holder.c -o holder $(pkg-config --cflags --libs shset) */
#include <shset.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* A directory only this user can write to, e.g. $XDG_RUNTIME_DIR. */
	const char *path = argc > 1 ? argv[1] : "/tmp/fruit.sock";
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	shset *s;
	int err = shset_create(&s, NULL);

	if (err < 0 || strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "holder: %s\n", err < 0 ? strerror(-err) : "path too long");
		return 1;
	}
	strcpy(addr.sun_path, path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct stat st; /* replace a socket left by an earlier run, nothing else */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(l, 8) < 0) {
		perror("holder");
		return 1;
	}
	shset_add(s, "apple", 5);
	/* Serves forever, or as many clients as argv[2] says. */
	long limit = argc > 2 ? atol(argv[2]) : -1;
	for (long served = 0; limit < 0 || served < limit; served++) {
		int c = accept(l, NULL, NULL);
		struct shset_peer p;
		if (c < 0)
			continue;
		if (shset_peer_cred(c, &p) == 0 && p.uid == getuid())
			shset_send(c, s);
		close(c);
	}
	printf("holder: pear is %s\n", shset_contains(s, "pear", 4) == 1 ? "there" : "missing");
	close(l);
	unlink(path);
	shset_close(s);
	return 0;
}
