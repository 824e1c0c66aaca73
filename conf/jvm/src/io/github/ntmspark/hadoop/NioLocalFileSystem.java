package io.github.ntmspark.hadoop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.io.nativeio.NativeIO;

/**
 * Hadoop's local file system (checksums included), setting permissions through java.nio.
 *
 * <p>Without Hadoop's native library (libhadoop, which pip's pyspark does not ship),
 * {@link RawLocalFileSystem#setPermission} starts a {@code chmod} process for every file and
 * directory it creates: about 70 processes for one small Parquet write. This class sets the
 * same POSIX bits in-process. With the native library loaded, or on a file system without
 * POSIX attributes (Windows), it does what Hadoop does.
 *
 * <p>Used by ntm-spark's local sessions as {@code spark.hadoop.fs.file.impl}; built by
 * {@code make jars} into {@code .ntm/jars/hadoop/ntm-hadoop-fs.jar}.
 */
public class NioLocalFileSystem extends LocalFileSystem {

  public NioLocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-free) file system underneath. */
  public static class Raw extends RawLocalFileSystem {
    // Bit i of a POSIX mode, from the lowest (others' execute) up.
    private static final PosixFilePermission[] BITS = {
      PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
      PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
      PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
    };

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      if (NativeIO.isAvailable() || (permission.toShort() & ~0777) != 0) {
        super.setPermission(p, permission); // native chmod, or sticky/setuid bits that java.nio cannot set
        return;
      }
      int mode = permission.toShort() & 0777;
      Set<PosixFilePermission> perms = EnumSet.noneOf(PosixFilePermission.class);
      for (int i = 0; i < BITS.length; i++) {
        if ((mode & (1 << i)) != 0) {
          perms.add(BITS[i]);
        }
      }
      try {
        Files.setPosixFilePermissions(pathToFile(p).toPath(), perms);
      } catch (UnsupportedOperationException e) {
        super.setPermission(p, permission);
      }
    }
  }
}
