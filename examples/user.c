/* user.c: any other program of the same user works on the holder's set.
 * cc user.c -o user $(pkg-config --cflags --libs shset) */
#include <shset.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/tmp/fruit.sock";
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct shset_peer p;
	shset *s;

	if (strlen(path) >= sizeof(addr.sun_path))
		return 1;
	strcpy(addr.sun_path, path);
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("user");
		return 1;
	}
	/* Trust only a holder of our own user (or root). */
	if (shset_peer_cred(c, &p) < 0 || (p.uid != getuid() && p.uid != 0)) {
		fprintf(stderr, "user: refusing a holder of another user\n");
		return 1;
	}
	int err = shset_recv(c, &s); /* refuses anything but one valid set */
	close(c);
	if (err < 0) {
		fprintf(stderr, "user: %s\n", strerror(-err));
		return 1;
	}
	printf("user: apple is %s\n", shset_contains(s, "apple", 5) == 1 ? "there" : "missing");
	shset_add(s, "pear", 4); /* the holder sees it at once */
	shset_close(s);
	return 0;
}
