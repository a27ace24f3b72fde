
/*
 * Feeds files, or every file in a directory, to a harness once each: a
 * replay for compilers without the libFuzzer runtime.
 */


#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_path(const char *path);
static int replay_dir(const char *path);
static int replay_file(const char *path);
static int replay_visible(const struct dirent *de);


int
main(int argc, char **argv)
{
    int  i, n, total;

    total = 0;

    for (i = 1; i < argc; i++) {
        n = replay_path(argv[i]);
        if (n < 0) {
            return 1;
        }

        total += n;
    }

    printf("%s: %d inputs replayed\n", argv[0], total);

    return 0;
}


/* returns the number of inputs run, or -1 */

static int
replay_path(const char *path)
{
    struct stat  st;

    if (stat(path, &st) == -1) {
        perror(path);
        return -1;
    }

    if (S_ISDIR(st.st_mode)) {
        return replay_dir(path);
    }

    return replay_file(path);
}


static int
replay_dir(const char *path)
{
    int              i, n, rc, total;
    char            *file;
    size_t           len;
    struct dirent  **list;

    /* sorted, so a failure names the same file on every run */

    n = scandir(path, &list, replay_visible, alphasort);
    if (n == -1) {
        perror(path);
        return -1;
    }

    total = 0;

    for (i = 0; i < n; i++) {
        len = strlen(path) + strlen(list[i]->d_name) + 2;

        file = malloc(len);
        if (file == NULL) {
            total = -1;
            break;
        }

        snprintf(file, len, "%s/%s", path, list[i]->d_name);

        rc = replay_path(file);

        free(file);

        if (rc < 0) {
            total = -1;
            break;
        }

        total += rc;
    }

    for (i = 0; i < n; i++) {
        free(list[i]);
    }

    free(list);

    return total;
}


static int
replay_file(const char *path)
{
    FILE           *f;
    long            size;
    unsigned char  *data;

    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }

    if (fseek(f, 0, SEEK_END) == -1 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) == -1)
    {
        perror(path);
        fclose(f);
        return -1;
    }

    /* exactly the file's size, so a read past the input is reported */

    data = malloc(size ? (size_t) size : 1);
    if (data == NULL) {
        fclose(f);
        return -1;
    }

    if (fread(data, 1, size, f) != (size_t) size) {
        perror(path);
        free(data);
        fclose(f);
        return -1;
    }

    fclose(f);

    LLVMFuzzerTestOneInput(data, size);

    free(data);

    return 1;
}


static int
replay_visible(const struct dirent *de)
{
    return de->d_name[0] != '.';
}
