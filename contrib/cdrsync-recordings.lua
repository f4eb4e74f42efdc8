-- cdrsync: check a signed recording link inside Apache httpd (mod_lua), for apache-recordings.conf.
--
-- Same scheme as nginx's secure_link and `cdrsync serve-recordings` (cdrsync/recordings/links.py):
--   <prefix><relpath>?s=<token>  or  ...?e=<expires>&s=<token>
--   token = base64url_nopad(md5("<expires>/<relpath> <key>")), expires "" for a permanent link,
--   relpath = the decoded request path after <prefix>; an expiry in the past fails, and with
--   <link_ttl> above 0 ([recordings] link_ttl) so does a link without an expiry.
-- Used as an authorization provider: `Require cdrsync-link <prefix> <key> <link_ttl>`.
require "apache2"

local function hex_to_bytes(hex)
    return (hex:gsub("%x%x", function(pair) return string.char(tonumber(pair, 16)) end))
end

local function token(r, expires, relpath, key)
    local b64 = r:base64_encode(hex_to_bytes(r:md5(expires .. "/" .. relpath .. " " .. key)))
    return (b64:gsub("%+", "-"):gsub("/", "_"):gsub("=", ""))
end

local function single(multi, name)
    -- A parameter given twice is refused: which one a server reads would be a guess.
    local values = multi[name]
    if values == nil then return "" end
    if type(values) == "table" then
        if #values ~= 1 then return nil end
        return values[1]
    end
    return values
end

function check_link(r, prefix, key, link_ttl)
    if prefix == nil or key == nil or key == "" then
        r:err("cdrsync-link: Require cdrsync-link <prefix> <key> <link_ttl> is incomplete")
        return apache2.AUTHZ_DENIED
    end
    -- a Require line from before link_ttl was an argument: links were permanent then
    local ttl = link_ttl == nil and 0 or tonumber(link_ttl:match("^%d+$") or "")
    if ttl == nil then
        r:err("cdrsync-link: <link_ttl> must be a whole number of seconds, not " .. link_ttl)
        return apache2.AUTHZ_DENIED
    end
    local uri = r.uri
    if uri:sub(1, #prefix) ~= prefix or #uri == #prefix then
        return apache2.AUTHZ_DENIED
    end
    local relpath = uri:sub(#prefix + 1)
    local _, multi = r:parseargs()
    local given, expires = single(multi, "s"), single(multi, "e")
    if given == nil or given == "" or expires == nil then
        return apache2.AUTHZ_DENIED
    end
    if expires == "" and ttl > 0 then
        return apache2.AUTHZ_DENIED
    end
    if expires ~= "" then
        if not expires:match("^[1-9]%d*$") or #expires > 12 or tonumber(expires) < os.time() then
            return apache2.AUTHZ_DENIED
        end
    end
    if token(r, expires, relpath, key) == given then
        return apache2.AUTHZ_GRANTED
    end
    return apache2.AUTHZ_DENIED
end
