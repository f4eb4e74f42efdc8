-- cdrsync's database login: SELECT on asteriskcdrdb.cdr and asteriskcdrdb.cel, nothing else.
--
-- cdrsync only ever reads the PBX database. Give it a login of its own that cannot write, so that
-- neither a bug nor a leaked config file can change or delete a call record, and that cannot read
-- the `asterisk` configuration database (it holds SIP secrets and FreePBX admin credentials).
--
-- Placeholders (replace all three before running):
--   __CDRSYNC_HOST__      where cdrsync connects FROM, as MySQL sees it:
--                           '127.0.0.1'  cdrsync on the PBX, source.url host 127.0.0.1 (TCP)
--                           'localhost'  cdrsync on the PBX, connecting through the unix socket
--                           '10.0.0.5'   cdrsync on another machine (its address; '10.0.0.%' = a subnet)
--                         MySQL/MariaDB treat 'localhost' (socket) and '127.0.0.1' (TCP) as different
--                         hosts: if unsure, run the script twice, once for each.
--   __CDRSYNC_PASSWORD__  a new random password, used nowhere else, e.g. `openssl rand -hex 16`
--                         (hex keeps it safe for sed and for the URL in source.url).
--   asteriskcdrdb         the CDR database; only change it if FreePBX uses another name (CDRDBNAME).
--   'cdrsync'@            the login name; change every occurrence if you want another one.
--
-- Run it as an administrator of the database server, e.g. on the PBX:
--
--   PW=$(openssl rand -hex 16)
--   sed -e "s/__CDRSYNC_HOST__/127.0.0.1/g" -e "s/__CDRSYNC_PASSWORD__/$PW/g" \
--       sql/readonly-user.sql | mysql -u root
--   echo "source.url = mysql+pymysql://cdrsync:$PW@127.0.0.1/asteriskcdrdb"
--
-- (On FreePBX the root account often logs in through the socket without a password; otherwise add
-- -p.) Check the result with sql/show-privileges.sql, or `cdrsync check`.
--
-- Server differences:
--   * MariaDB >= 10.1 and MySQL >= 5.7: the script is idempotent (re-running it resets the password
--     and re-grants; it never widens an existing grant).
--   * MariaDB 5.5 (SNG7 / CentOS 7 FreePBX boxes): no `IF NOT EXISTS` and no `ALTER USER`. Delete
--     the ALTER USER line and write `CREATE USER 'cdrsync'@'__CDRSYNC_HOST__' IDENTIFIED BY '...';`
--     (a second run then fails with "Operation CREATE USER failed": use
--     `SET PASSWORD FOR 'cdrsync'@'__CDRSYNC_HOST__' = PASSWORD('...');` to change the password).
--   * MySQL 8: new users get the caching_sha2_password plugin. PyMySQL needs the Python package
--     `cryptography` for it over a non-TLS connection (pip install cryptography), or create the user
--     `IDENTIFIED WITH mysql_native_password BY '...'` (MySQL 8.0 only; 8.4 disables that plugin).
--   * GRANT needs no FLUSH PRIVILEGES; it takes effect for new connections at once.

CREATE USER IF NOT EXISTS 'cdrsync'@'__CDRSYNC_HOST__' IDENTIFIED BY '__CDRSYNC_PASSWORD__';
ALTER USER 'cdrsync'@'__CDRSYNC_HOST__' IDENTIFIED BY '__CDRSYNC_PASSWORD__';

-- Table-level grants only: not `asteriskcdrdb.*` (FreePBX keeps other tables there, and later
-- modules add more) and never `*.*`.
GRANT SELECT ON asteriskcdrdb.cdr TO 'cdrsync'@'__CDRSYNC_HOST__';
GRANT SELECT ON asteriskcdrdb.cel TO 'cdrsync'@'__CDRSYNC_HOST__';

-- To undo: DROP USER 'cdrsync'@'__CDRSYNC_HOST__';
