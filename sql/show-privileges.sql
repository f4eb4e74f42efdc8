-- What may the cdrsync login do? Expected: USAGE on *.* (= may log in, nothing more) and SELECT on
-- asteriskcdrdb.cdr and asteriskcdrdb.cel. Anything else (INSERT, UPDATE, DELETE, ALL PRIVILEGES,
-- a grant on `asteriskcdrdb`.* or *.*) is more than cdrsync needs: REVOKE it.
--
-- Run it as an administrator, with the same host as in readonly-user.sql:
--   sed -e "s/__CDRSYNC_HOST__/127.0.0.1/g" sql/show-privileges.sql | mysql -u root -t
-- Logged in as cdrsync itself, `SHOW GRANTS;` alone shows the same (cdrsync check does that).

SHOW GRANTS FOR 'cdrsync'@'__CDRSYNC_HOST__';

-- The same as rows, one per privilege and object (works on MariaDB and MySQL 5.7/8; an
-- administrator sees every account here, an ordinary login only its own grants).
SELECT 'global' AS level, '*' AS db, '*' AS tbl, PRIVILEGE_TYPE AS privilege, IS_GRANTABLE
  FROM information_schema.USER_PRIVILEGES
 WHERE GRANTEE = '''cdrsync''@''__CDRSYNC_HOST__'''
UNION ALL
SELECT 'database', TABLE_SCHEMA, '*', PRIVILEGE_TYPE, IS_GRANTABLE
  FROM information_schema.SCHEMA_PRIVILEGES
 WHERE GRANTEE = '''cdrsync''@''__CDRSYNC_HOST__'''
UNION ALL
SELECT 'table', TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE
  FROM information_schema.TABLE_PRIVILEGES
 WHERE GRANTEE = '''cdrsync''@''__CDRSYNC_HOST__'''
UNION ALL
SELECT 'column', TABLE_SCHEMA, CONCAT(TABLE_NAME, '.', COLUMN_NAME), PRIVILEGE_TYPE, IS_GRANTABLE
  FROM information_schema.COLUMN_PRIVILEGES
 WHERE GRANTEE = '''cdrsync''@''__CDRSYNC_HOST__'''
 ORDER BY 1, 2, 3, 4;
