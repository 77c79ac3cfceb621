// Run by the mongodb-init-replicaset Job with mongosh, connected to mongodb-0 as the
// root user. Idempotent.
const members = parseInt(process.env.MONGODB_MEMBERS, 10);
const ns = process.env.POD_NAMESPACE;
const host = (i) => `mongodb-${i}.mongodb.${ns}.svc.cluster.local:27017`;

let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  initiated = false;
}
if (!initiated) {
  const config = { _id: "rs0", members: [] };
  for (let i = 0; i < members; i++) config.members.push({ _id: i, host: host(i) });
  print(`initiating replica set rs0 with ${members} member(s)`);
  rs.initiate(config);
}

// Wait until a primary is elected (this connection is to member 0, usually it).
for (let i = 0; i < 120 && !rs.status().members.some((m) => m.stateStr === "PRIMARY"); i++) sleep(1000);
const primary = rs.status().members.find((m) => m.stateStr === "PRIMARY");
if (!primary) throw new Error("no primary after 120 s");
if (!db.hello().isWritablePrimary) {
  print(`member 0 is not primary (${primary.name}); the Job will retry`);
  quit(1);
}

const admin = db.getSiblingDB("admin");
const user = process.env.APP_USERNAME;
// Each service uses its own database (organization, gateway, member, ...); one
// account with read/write on application databases keeps adding a service
// operator-free. Replace by per-database roles if your policy demands it.
const roles = [{ role: "readWriteAnyDatabase", db: "admin" }];
if (admin.getUser(user)) {
  admin.updateUser(user, { pwd: process.env.APP_PASSWORD, roles });
  print(`updated user ${user}`);
} else {
  admin.createUser({ user, pwd: process.env.APP_PASSWORD, roles });
  print(`created user ${user}`);
}
print("replica set ready");
